//! A SecretProviderClass's `objects`, read as the AWS provider reads them, so that a class
//! written for `provider: aws` means the same with `provider: secretsfs`
//! (docs/research/aws-csi-provider.md, section 3).
//!
//! The AWS provider decodes the YAML to JSON and then with Go's `encoding/json`: keys match
//! case-insensitively, unknown keys are ignored, and scalars become strings. The checks run in
//! its order, and their messages are its messages, since they are what a user sees in the
//! pod's events. One difference, from the YAML version: this reads YAML 1.2, where an unquoted
//! `0644` is the number 644 and `yes` is a string (YAML 1.1 reads 420 and true); an unquoted
//! permission is refused either way.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// Where an object is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    SecretsManager,
    ParameterStore,
}

/// One entry of `objects`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    /// A name, or an ARN (whose service says the type when `objectType` is absent).
    pub name: String,
    pub object_type: ObjectType,
    pub alias: Option<String>,
    pub version: Option<String>,
    pub version_label: Option<String>,
    /// The file's mode when the object says one (`filePermission`, four octal digits).
    pub mode: Option<u32>,
    pub jmes_path: Vec<JmesEntry>,
    pub failover: Option<FailoverObject>,
    /// The file it is written to: the alias, else the name, translated.
    pub file_name: String,
}

/// A file cut out of a JSON secret by a JMESPath expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmesEntry {
    pub path: String,
    pub alias: String,
    pub file_name: String,
    /// Its own mode, else the object's.
    pub mode: Option<u32>,
}

/// What is read in the failover region in place of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverObject {
    pub name: String,
    pub version: Option<String>,
    pub version_label: Option<String>,
}

/// A SecretProviderClass the AWS provider would refuse, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn refuse<T>(message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(message.into()))
}

/// `pathTranslation`: absent or empty is `_`; `False` in any case turns it off; otherwise one
/// character (one byte, as the AWS provider counts), which replaces every `/` of a file name.
pub fn path_translation(value: Option<&str>) -> Result<Option<char>, SpecError> {
    match value.unwrap_or("") {
        "" => Ok(Some('_')),
        v if v.eq_ignore_ascii_case("false") => Ok(None),
        v if v.len() == 1 => Ok(v.chars().next()),
        _ => refuse("pathTranslation must be either 'False' or a single character string"),
    }
}

/// Parses and checks `objects` for `regions` (the primary, then the failover region if any).
pub fn parse_objects(
    objects: &str,
    translation: Option<char>,
    regions: &[String],
) -> Result<Vec<ObjectSpec>, SpecError> {
    let load = |why: String| SpecError(format!("Failed to load SecretProviderClass: {why}"));
    let entries: Vec<Value> = if objects.trim().is_empty() {
        Vec::new()
    } else {
        match serde_saphyr::from_str::<Value>(objects).map_err(|e| load(e.to_string()))? {
            Value::Array(entries) => entries,
            Value::Null => Vec::new(),
            _ => return Err(load("the objects are not a list".into())),
        }
    };
    let mut specs = Vec::with_capacity(entries.len());
    for entry in entries {
        let fields = match entry {
            Value::Object(map) => Fields::of(map),
            Value::Null => return refuse("Empty descriptor entry in SecretProviderClass"),
            _ => return Err(load("an object is not a map".into())),
        };
        specs.push(object(&fields, translation, regions)?);
    }
    check_duplicates(&specs)?;
    for spec in &specs {
        let jmes = spec.jmes_path.iter().map(|e| e.file_name.as_str());
        for file_name in std::iter::once(spec.file_name.as_str()).chain(jmes) {
            if let Some(why) = unwritable(file_name) {
                return refuse(format!("invalid filepath: {file_name:?}: {why}"));
            }
        }
    }
    Ok(specs)
}

/// Why the driver would not write `file_name` (its `validatePath`, and `filepath.Clean(p) ==
/// p`), which the AWS provider leaves to it: refused here, before anything is fetched.
fn unwritable(file_name: &str) -> Option<&'static str> {
    if file_name.is_empty() {
        return Some("a file name cannot be empty");
    }
    if file_name.len() > 4096 {
        return Some("a path is at most 4096 characters");
    }
    if file_name.starts_with('/') {
        return Some("a path must be relative");
    }
    if file_name.starts_with("..") {
        return Some("a path cannot start with '..'");
    }
    for part in file_name.split('/') {
        match part {
            "" | "." => {
                return Some("the driver writes only clean paths (no //, /./ or trailing /)");
            }
            ".." => return Some("a path cannot contain .."),
            _ if part.len() > 255 => return Some("a file name is at most 255 characters"),
            _ => {}
        }
    }
    None
}

/// An entry's keys folded to lower case, as `encoding/json` matches them; values as strings.
struct Fields(HashMap<String, Value>);

impl Fields {
    fn of(map: serde_json::Map<String, Value>) -> Fields {
        Fields(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// The field as Go would set a string: absent or null is empty; numbers and booleans as
    /// text; a list or a map cannot be a string.
    fn text(&self, key: &str) -> Result<String, SpecError> {
        match self.0.get(&key.to_ascii_lowercase()) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(number_text(n)),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(_) => Err(SpecError(format!(
                "Failed to load SecretProviderClass: {key} must be a string"
            ))),
        }
    }

    fn list(&self, key: &str) -> Result<Vec<Fields>, SpecError> {
        match self.0.get(&key.to_ascii_lowercase()) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(Fields::of(map.clone())),
                    _ => Ok(Fields(HashMap::new())),
                })
                .collect(),
            Some(_) => refuse(format!(
                "Failed to load SecretProviderClass: {key} must be a list"
            )),
        }
    }

    fn map(&self, key: &str) -> Result<Fields, SpecError> {
        match self.0.get(&key.to_ascii_lowercase()) {
            None | Some(Value::Null) => Ok(Fields(HashMap::new())),
            Some(Value::Object(map)) => Ok(Fields::of(map.clone())),
            Some(_) => refuse(format!(
                "Failed to load SecretProviderClass: {key} must be a map"
            )),
        }
    }
}

/// A number as Go's `strconv` writes it into a string field: whole numbers without a
/// fraction (a YAML reader may hand `0644` over as the float 644.0).
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn object(
    fields: &Fields,
    translation: Option<char>,
    regions: &[String],
) -> Result<ObjectSpec, SpecError> {
    let name = fields.text("objectName")?;
    let given_type = fields.text("objectType")?;
    let alias = some(fields.text("objectAlias")?);
    let version = some(fields.text("objectVersion")?);
    let version_label = some(fields.text("objectVersionLabel")?);
    let permission = fields.text("filePermission")?;
    if name.is_empty() {
        return refuse("Object name must be specified");
    }
    let primary = regions.first().map_or("", String::as_str);
    let object_type = type_of(&name, &given_type, primary)?;
    if object_type == ObjectType::ParameterStore && version.is_some() && version_label.is_some() {
        return refuse(format!(
            "ssm parameters can not specify both objectVersion and objectVersionLabel: {name}"
        ));
    }
    let file_name = translated(alias.as_deref().unwrap_or(&name), translation);
    if climbs_out(&file_name) {
        return refuse(format!("path can not contain ../: {file_name}"));
    }
    let mode = file_mode(&permission)?;
    let mut jmes_path = Vec::new();
    for entry in fields.list("jmesPath")? {
        let path = entry.text("path")?;
        if path.is_empty() {
            return refuse("Path must be specified for JMES object");
        }
        let alias = entry.text("objectAlias")?;
        if alias.is_empty() {
            return refuse("Object alias must be specified for JMES object");
        }
        let own = file_mode(&entry.text("filePermission")?)?;
        jmes_path.push(JmesEntry {
            path,
            file_name: translated(&alias, translation),
            alias,
            mode: own.or(mode),
        });
    }
    let failover_fields = fields.map("failoverObject")?;
    let failover_name = failover_fields.text("objectName")?;
    let failover = if failover_name.is_empty() {
        None
    } else {
        if alias.is_none() {
            return refuse(format!(
                "object alias must be specified for objects with failover entries: {name}"
            ));
        }
        let Some(second) = regions.get(1) else {
            return refuse(format!(
                "failover object allowed only when failover region is defined: {name}"
            ));
        };
        type_of(&failover_name, &given_type, second)?;
        let failover_version = some(failover_fields.text("objectVersion")?);
        let failover_label = some(failover_fields.text("objectVersionLabel")?);
        if object_type == ObjectType::ParameterStore
            && failover_version.is_some()
            && failover_label.is_some()
        {
            return refuse(format!(
                "ssm parameters can not specify both objectVersion and objectVersionLabel: {failover_name}"
            ));
        }
        if failover_version != version {
            return refuse(format!(
                "object versions must match between primary and failover regions: {name}"
            ));
        }
        Some(FailoverObject {
            name: failover_name,
            version: failover_version,
            version_label: failover_label,
        })
    };
    Ok(ObjectSpec {
        name,
        object_type,
        alias,
        version,
        version_label,
        mode,
        jmes_path,
        failover,
        file_name,
    })
}

/// The object's type: `objectType`, or the service of an ARN; an ARN's region must be the
/// region it is read in.
fn type_of(name: &str, given: &str, region: &str) -> Result<ObjectType, SpecError> {
    let arn = if name.starts_with("arn:") {
        let fields: Vec<&str> = name.splitn(6, ':').collect();
        if fields.len() < 6 {
            return refuse(format!("Invalid ARN format in object name: {name}"));
        }
        if fields[3] != region {
            return refuse(format!("ARN region must match region {region}: {name}"));
        }
        Some(fields[2])
    } else {
        None
    };
    let by_name = |service: &str| match service {
        "secretsmanager" => Some(ObjectType::SecretsManager),
        "ssmparameter" | "ssm" => Some(ObjectType::ParameterStore),
        _ => None,
    };
    match (given, arn) {
        ("", None) => refuse(format!(
            "Must use objectType when a full ARN is not specified: {name}"
        )),
        ("", Some(service)) => {
            by_name(service).ok_or_else(|| SpecError(format!("Invalid service in ARN: {name}")))
        }
        // `ssm` names the service in an ARN, never an objectType.
        ("ssm", _) => refuse(format!("Invalid objectType: {given}")),
        (given, arn) => {
            let Some(kind) = by_name(given) else {
                return refuse(format!("Invalid objectType: {given}"));
            };
            match arn.map(by_name) {
                Some(from_arn) if from_arn != Some(kind) => {
                    refuse(format!("objectType does not match ARN: {name}"))
                }
                _ => Ok(kind),
            }
        }
    }
}

/// `name` as a file name: every `/` replaced by `translation`, or, without one, the leading
/// `/`s dropped.
fn translated(name: &str, translation: Option<char>) -> String {
    match translation {
        Some(c) => name.replace('/', &c.to_string()),
        None => name.trim_start_matches('/').to_owned(),
    }
}

/// The AWS provider's test for a name that leaves the mount (`/../`, a leading `../`, a
/// trailing `/..`). A bare `..` passes there, and is refused later by the driver.
fn climbs_out(file_name: &str) -> bool {
    file_name.contains("/../") || file_name.starts_with("../") || file_name.ends_with("/..")
}

/// `filePermission`: four octal digits, or nothing.
fn file_mode(permission: &str) -> Result<Option<u32>, SpecError> {
    if permission.is_empty() {
        return Ok(None);
    }
    let octal = permission.len() == 4 && permission.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(permission, 8) {
        Ok(mode) if octal => Ok(Some(mode)),
        _ => refuse(format!("Invalid File Permission: {permission}")),
    }
}

/// Two objects that would write the same file, in the AWS provider's terms: the same name
/// with the same alias and label (or neither), and any alias used twice.
fn check_duplicates(specs: &[ObjectSpec]) -> Result<(), SpecError> {
    let mut seen: HashMap<&str, (Option<&str>, Option<&str>)> = HashMap::new();
    let mut aliases: Vec<&str> = Vec::new();
    for spec in specs {
        let alias = spec.alias.as_deref();
        let label = spec.version_label.as_deref();
        if let Some(&(seen_alias, seen_label)) = seen.get(spec.name.as_str()) {
            let name = &spec.name;
            match (alias, label) {
                (Some(a), None) if seen_alias == Some(a) && seen_label.is_none() => {
                    return refuse(format!(
                        "found descriptor with duplicate object name {name}, duplicate object alias {a}, and no version label"
                    ));
                }
                (None, Some(l)) if seen_alias.is_none() && seen_label == Some(l) => {
                    return refuse(format!(
                        "found descriptor with duplicate object name {name}, no object alias, and duplicate version label {l}"
                    ));
                }
                (Some(a), Some(l)) if seen_alias == Some(a) && seen_label == Some(l) => {
                    return refuse(format!(
                        "found descriptor with duplicate object name {name}, duplicate object alias {a}, and duplicate version label {l}"
                    ));
                }
                (None, None) if seen_alias.is_none() && seen_label.is_none() => {
                    return refuse(format!(
                        "found descriptor with duplicate object name {name}, no object alias, and no version label"
                    ));
                }
                _ => {}
            }
        }
        seen.insert(&spec.name, (alias, label));
        if let Some(alias) = alias {
            if aliases.contains(&alias) {
                return refuse(format!("found duplicate object alias {alias}"));
            }
            aliases.push(alias);
        }
        for entry in &spec.jmes_path {
            let jmes_alias = entry.alias.as_str();
            if aliases.contains(&jmes_alias) {
                return refuse(format!(
                    "Name already in use for objectAlias: found duplicate object alias {jmes_alias} in JMES path entry {}",
                    entry.path
                ));
            }
            aliases.push(jmes_alias);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
