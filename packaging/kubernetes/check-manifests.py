"""The checks of validate.sh, run with the python of the venv it installs (kubernetes_validate,
jsonschema and PyYAML come from there).

    check-manifests.py --kubernetes-versions "1.30.0 1.37.0" FILE...

Each document of each file is checked on its own:

- A Helm values file (its name ends in `values.yaml`; it holds no objects): values of the
  Secrets Store CSI Driver chart. Only the chart's top-level keys (v1.6.0), `tokenRequests`
  for both audiences the provider uses, and the types of the rotation settings.
- A SecretProviderClass: the CRD's schema (secrets-store.csi.x-k8s.io/v1, with `metadata`
  checked as ObjectMeta), strictly, then what the secretsfs provider reads: `provider:
  secretsfs`, known parameters with values it accepts, and `objects` as a YAML list of maps
  with an objectName (an ARN of the class's region, if an ARN), known keys, an objectType,
  and quoted four-digit permissions. kubernetes-validate has
  no schema for it: its CLI warns and passes, which would leave the class unchecked.
- Any other object: kubernetes-validate's schema for each Kubernetes version, strictly. A kind
  it has no schema for is an error here (its CLI only warns), so that a misspelled kind or
  apiVersion fails rather than skipping the object.

Then across the files given:

- Pod Security: a Pod, or a workload's pod template, whose namespace is a Namespace among the
  files labelled `pod-security.kubernetes.io/enforce: baseline` or `restricted` must meet
  that level, as admission would decide (what is checked: `pod_security`).
- A CSI volume of the Secrets Store CSI Driver must be readOnly (the driver refuses others)
  and name a SecretProviderClass; when the files hold classes, one in the pod's namespace.
- The CSIDriver secrets-store.csi.k8s.io must mount with pod info and ask tokens for both
  audiences; a values file's tokenRequests must be the CSIDriver's.

Prints one line per problem, `ERROR FILE: ...`, naming the object and the field, and exits 1
if there is any.
"""
import argparse
import re
import sys

import jsonschema
import kubernetes_validate.utils as kv
import referencing
import yaml
from packaging.version import Version

# The token audiences the provider uses, and what for.
AUDIENCES = {"sts.amazonaws.com": "IRSA", "pods.eks.amazonaws.com": "EKS Pod Identity"}
DRIVER = "secrets-store.csi.k8s.io"
SPC_API = "secrets-store.csi.x-k8s.io/v1"

# The top-level values the driver chart's templates read (v1.6.0).
CHART_KEYS = {
    "automountServiceAccountToken", "commonLabels", "enableSecretRotation", "fullnameOverride",
    "imagePullSecrets", "linux", "livenessProbe", "logFormatJSON", "logVerbosity",
    "maxCallRecvMsgSize", "nameOverride", "providerHealthCheck", "providerHealthCheckInterval",
    "rbac", "rotationPollInterval", "syncSecret", "tokenRequests", "windows",
}
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")

# The parameters the provider reads (the AWS provider's, and roleArn); the driver passes any
# key on, and a provider ignores those it does not know, so a misspelled one is silent there.
PARAMETERS = {
    "objects", "region", "failoverRegion", "pathTranslation", "usePodIdentity",
    "preferredAddressType", "roleArn",
}
OBJECT_KEYS = {
    "objectname", "objecttype", "objectalias", "objectversion", "objectversionlabel",
    "filepermission", "jmespath", "failoverobject",
}
JMES_KEYS = {"path", "objectalias", "filepermission"}
FAILOVER_KEYS = {"objectname", "objectversion", "objectversionlabel"}
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def string_map():
    return {"type": "object", "additionalProperties": {"type": "string"}}


# The CRD's v1 schema (charts/secrets-store-csi-driver/crds, v1.6.0), strict: the API server
# prunes unknown fields, and kubectl's strict field validation refuses them.
SPC_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kubernetes.io/api/secretproviderclass-secrets-store-v1.json",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"enum": [SPC_API]},
        "kind": {"enum": ["SecretProviderClass"]},
        "metadata": {
            "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            # The driver refuses a class without either.
            "required": ["provider", "parameters"],
            "properties": {
                "provider": {"type": "string"},
                "parameters": string_map(),
                "secretObjects": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "annotations": string_map(),
                            "labels": string_map(),
                            "secretName": {"type": "string"},
                            "type": {"type": "string"},
                            "data": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "key": {"type": "string"},
                                        "objectName": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "status": {"type": "object"},
    },
}


class Report:
    def __init__(self):
        self.problems = 0

    def error(self, filename, what, field, message):
        where = f"{what}: {field}: " if field else f"{what}: "
        print(f"ERROR {filename}: {where}{message}")
        self.problems += 1


def name_of(obj):
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')} {ns}/{name}" if ns else f"{obj.get('kind', '?')} {name}"


def field_path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def yaml_problem(e):
    """A YAML error on one line: what, and where."""
    mark = getattr(e, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{getattr(e, 'problem', None) or e}{where}"


def load(filename, report):
    try:
        with open(filename, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        report.error(filename, "file", None, str(e))
        return None
    except yaml.YAMLError as e:
        report.error(filename, "file", None, f"not YAML: {yaml_problem(e)}")
        return None


# ----- objects kubernetes-validate knows ---------------------------------------------------------

def check_builtin(filename, obj, versions, report):
    """True if the object is valid for every version."""
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            # The CLI's words, so that its users (and tests) read the same line.
            path = ".".join(str(p) for p in e.path)
            print(f"ERROR {filename} did not validate for resource {kv.kn(obj)} against version "
                  f"{e.version}: {path}: {e.message}")
            report.problems += 1
            return False
        except kv.SchemaNotFoundError:
            report.error(filename, name_of(obj), None,
                         f"no schema for kind {obj['kind']} in {obj['apiVersion']} (Kubernetes "
                         f"{kv.major_minor(version)}): a misspelled kind or apiVersion?")
            return False
    return True


# ----- SecretProviderClass -----------------------------------------------------------------------

def check_spc(filename, obj, versions, report):
    """True if the class has the CRD's shape (whatever the provider would say of it)."""
    what = name_of(obj)
    for version in versions:
        schema_dir = "v%s-local-strict" % [
            v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
        defs = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
        registry = referencing.Registry().with_resources([
            (SPC_SCHEMA["$id"], referencing.Resource.from_contents(SPC_SCHEMA)),
            (defs["$id"], referencing.Resource.from_contents(defs)),
        ])
        validator = jsonschema.Draft202012Validator(SPC_SCHEMA, registry=registry)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        for e in errors:
            report.error(filename, what, field_path(e.path), e.message)
        if errors:
            return False
    if not (obj.get("metadata") or {}).get("name"):
        report.error(filename, what, "metadata.name", "required")
    spec = obj["spec"]
    if spec["provider"] != "secretsfs":
        report.error(filename, what, "spec.provider",
                     f"{spec['provider']!r}, not 'secretsfs': the driver would ask "
                     f"{spec['provider']}.sock")
    params = spec["parameters"]
    if not params:
        report.error(filename, what, "spec.parameters", "empty (the driver refuses the class)")
    for key in params:
        if key not in PARAMETERS:
            report.error(filename, what, f"spec.parameters.{key}",
                         f"not a parameter of the provider (it would be ignored); known: "
                         f"{', '.join(sorted(PARAMETERS))}")
    translation = params.get("pathTranslation", "")
    if translation and translation.lower() != "false" and len(translation.encode()) != 1:
        report.error(filename, what, "spec.parameters.pathTranslation",
                     "must be either 'False' or a single character")
    if params.get("usePodIdentity", "") not in GO_BOOLS | {""}:
        report.error(filename, what, "spec.parameters.usePodIdentity",
                     f"{params['usePodIdentity']!r} is not a boolean (true or false)")
    if params.get("preferredAddressType", "").lower() not in ("", "auto", "ipv4", "ipv6"):
        report.error(filename, what, "spec.parameters.preferredAddressType",
                     "must be auto, ipv4 or ipv6")
    if params.get("region") and params.get("region") == params.get("failoverRegion"):
        report.error(filename, what, "spec.parameters.failoverRegion",
                     "cannot be the same as the primary region")
    check_objects(filename, what, params.get("objects", ""), params.get("region"), report)
    return True


def check_permission(filename, what, field, value, report):
    if value is None:
        return
    if not isinstance(value, str):
        report.error(filename, what, field,
                     f"{value!r} is not a string: quote it (\"0440\"); unquoted, YAML reads "
                     f"a number and the provider refuses it")
    elif not re.fullmatch(r"[0-7]{4}", value):
        report.error(filename, what, field, f"{value!r} is not four octal digits")


def keys_folded(filename, what, field, entry, known, report):
    """The entry's keys in lower case, as the provider matches them; unknown ones reported."""
    folded = {}
    for key, value in entry.items():
        k = str(key).lower()
        if k not in known:
            report.error(filename, what, f"{field}.{key}", "unknown key (the provider ignores it)")
        folded[k] = value
    return folded


def check_objects(filename, what, text, region, report):
    field = "spec.parameters.objects"
    try:
        objects = yaml.safe_load(text)
    except yaml.YAMLError as e:
        report.error(filename, what, field, f"not YAML: {yaml_problem(e)}")
        return
    if not isinstance(objects, list) or not objects:
        report.error(filename, what, field, "must be a YAML list of objects, one at least")
        return
    for i, entry in enumerate(objects):
        at = f"{field}[{i}]"
        if not isinstance(entry, dict):
            report.error(filename, what, at, "must be a map with an objectName")
            continue
        o = keys_folded(filename, what, at, entry, OBJECT_KEYS, report)
        name = o.get("objectname")
        if not isinstance(name, str) or not name:
            report.error(filename, what, f"{at}.objectName", "required")
            continue
        arn = name.split(":", 5)
        if name.startswith("arn:") and len(arn) < 6:
            report.error(filename, what, f"{at}.objectName",
                         "not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)")
        elif name.startswith("arn:") and region and arn[3] != region:
            report.error(filename, what, f"{at}.objectName",
                         f"the ARN's region {arn[3]} is not the class's region {region}")
        kind = o.get("objecttype")
        if kind is None and not name.startswith("arn:"):
            report.error(filename, what, f"{at}.objectType",
                         "required when objectName is not an ARN")
        elif kind is not None and kind not in ("secretsmanager", "ssmparameter"):
            report.error(filename, what, f"{at}.objectType",
                         f"{kind!r}: must be secretsmanager or ssmparameter")
        check_permission(filename, what, f"{at}.filePermission", o.get("filepermission"), report)
        jmes = o.get("jmespath")
        if jmes is not None and not isinstance(jmes, list):
            report.error(filename, what, f"{at}.jmesPath", "must be a list")
        for j, e in enumerate(jmes or []):
            jat = f"{at}.jmesPath[{j}]"
            if not isinstance(e, dict):
                report.error(filename, what, jat, "must be a map with path and objectAlias")
                continue
            e = keys_folded(filename, what, jat, e, JMES_KEYS, report)
            for key, spelled in (("path", "path"), ("objectalias", "objectAlias")):
                if not isinstance(e.get(key), str) or not e.get(key):
                    report.error(filename, what, f"{jat}.{spelled}", "required")
            check_permission(filename, what, f"{jat}.filePermission", e.get("filepermission"),
                             report)
        failover = o.get("failoverobject")
        if failover is not None:
            if not isinstance(failover, dict):
                report.error(filename, what, f"{at}.failoverObject", "must be a map")
            else:
                keys_folded(filename, what, f"{at}.failoverObject", failover, FAILOVER_KEYS,
                            report)


# ----- Helm values of the driver chart -----------------------------------------------------------

def check_values(filename, values, report):
    what = "driver chart values"
    if not isinstance(values, dict):
        report.error(filename, what, None, "not a map")
        return None
    for key in values:
        if key not in CHART_KEYS:
            report.error(filename, what, key,
                         "not a value of the secrets-store-csi-driver chart (v1.6.0)")
    if "enableSecretRotation" in values and not isinstance(values["enableSecretRotation"], bool):
        report.error(filename, what, "enableSecretRotation", "must be true or false")
    interval = values.get("rotationPollInterval")
    if interval is not None and not GO_DURATION.match(str(interval)):
        report.error(filename, what, "rotationPollInterval",
                     f"{interval!r} is not a duration such as 2m or 3600s")
    return audiences(filename, what, "tokenRequests", values.get("tokenRequests"), report)


def audiences(filename, what, field, requests, report):
    """The audiences of a tokenRequests list, reported when one the provider needs is missing."""
    if not isinstance(requests, list):
        report.error(filename, what, field,
                     f"missing: the provider needs tokens for {' and '.join(AUDIENCES)}")
        return None
    found = [r.get("audience") for r in requests if isinstance(r, dict)]
    for audience in AUDIENCES:
        if audience not in found:
            report.error(filename, what, field,
                         f"no token request for audience {audience}: without its token, the "
                         f"provider refuses the mounts that use {AUDIENCES[audience]}")
    return sorted(a for a in found if isinstance(a, str))


# ----- Pod Security ------------------------------------------------------------------------------

# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards/).
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}
LEVELS = {"privileged": 0, "baseline": 1, "restricted": 2}


def pod_specs(obj):
    """(path, pod spec, namespace) of the pod an object is or makes."""
    ns = (obj.get("metadata") or {}).get("namespace") or "default"
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        yield "spec", spec, ns
    elif kind in ("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet", "Job",
                  "ReplicationController"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}, ns
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield "spec.jobTemplate.spec.template.spec", template.get("spec") or {}, ns


def containers(pod, path):
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(pod.get(group) or []):
            yield f"{path}.{group}[{i}]", c


def pod_security(pod, path, level):
    """(field, what is wrong) for each way the pod breaks the level. Not checked: the
    deprecated AppArmor annotations, and the exemptions of Windows pods."""
    psc = pod.get("securityContext") or {}
    ctrs = [(at, c, c.get("securityContext") or {}) for at, c in containers(pod, path)]
    contexts = [(f"{path}.securityContext", psc)]
    contexts += [(f"{at}.securityContext", sc) for at, _, sc in ctrs]
    confined = ("RuntimeDefault", "Localhost")

    # baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            yield f"{path}.{key}", "must not be true"
    for at, sc in contexts:
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"{at}.windowsOptions.hostProcess", "must not be true"
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"{at}.seccompProfile.type", "must not be Unconfined"
        if (sc.get("appArmorProfile") or {}).get("type") not in (None,) + confined:
            yield f"{at}.appArmorProfile.type", "must be RuntimeDefault or Localhost"
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            yield f"{at}.seLinuxOptions.type", (
                f"must be one of {', '.join(sorted(SELINUX_TYPES - {''}))}")
        for key in ("user", "role"):
            if selinux.get(key):
                yield f"{at}.seLinuxOptions.{key}", "must not be set"
    for i, sysctl in enumerate(psc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield (f"{path}.securityContext.sysctls[{i}].name",
                   f"{sysctl.get('name')} is not a safe sysctl")
    for i, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            yield f"{path}.volumes[{i}].hostPath", "hostPath volumes are not allowed"
    for at, c, sc in ctrs:
        if sc.get("privileged"):
            yield f"{at}.securityContext.privileged", "must not be true"
        if sc.get("procMount", "Default") != "Default":
            yield f"{at}.securityContext.procMount", "must be Default"
        if level < LEVELS["restricted"]:  # restricted allows less, below
            for cap in (sc.get("capabilities") or {}).get("add") or []:
                if cap not in BASELINE_CAPS:
                    yield f"{at}.securityContext.capabilities.add", f"{cap} is not allowed"
        for j, port in enumerate(c.get("ports") or []):
            if port.get("hostPort"):
                yield f"{at}.ports[{j}].hostPort", "must not be set"
    if level < LEVELS["restricted"]:
        return

    # restricted
    for i, volume in enumerate(pod.get("volumes") or []):
        for kind in volume:
            if kind not in RESTRICTED_VOLUMES | {"name", "hostPath"}:
                yield f"{path}.volumes[{i}].{kind}", f"{kind} volumes are not allowed"
    if psc.get("runAsUser") == 0:
        yield f"{path}.securityContext.runAsUser", "must not be 0"
    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_confined = (psc.get("seccompProfile") or {}).get("type") in confined
    for at, _, sc in ctrs:
        at = f"{at}.securityContext"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{at}.allowPrivilegeEscalation", "must be false"
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and not pod_nonroot):
            yield f"{at}.runAsNonRoot", f"must be true (here or in {path}.securityContext)"
        if sc.get("runAsUser") == 0:
            yield f"{at}.runAsUser", "must not be 0"
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp not in confined and not (seccomp is None and pod_confined):
            yield f"{at}.seccompProfile.type", (
                f"must be RuntimeDefault or Localhost (here or in {path}.securityContext)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{at}.capabilities.drop", "must include ALL"
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                yield f"{at}.capabilities.add", f"{cap} is not allowed (NET_BIND_SERVICE only)"


# ----- across the files --------------------------------------------------------------------------

def check_together(objects, values, report):
    levels = {}
    for _, obj in objects:
        if obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1":
            labels = obj["metadata"].get("labels") or {}
            level = labels.get("pod-security.kubernetes.io/enforce", "privileged")
            levels[obj["metadata"].get("name")] = level if level in LEVELS else "privileged"
    classes = {(o["metadata"].get("namespace") or "default", o["metadata"].get("name"))
               for _, o in objects if o.get("kind") == "SecretProviderClass"}
    for filename, obj in objects:
        for path, pod, ns in pod_specs(obj):
            level = levels.get(ns, "privileged")
            for field, problem in pod_security(pod, path, LEVELS[level]) if LEVELS[level] else ():
                report.error(filename, name_of(obj), field,
                             f"{problem} (Pod Security \"{level}\", enforced in namespace {ns})")
            for field, problem in csi_volumes(pod, path, ns, classes):
                report.error(filename, name_of(obj), field, problem)
    driver_audiences = None
    for filename, obj in objects:
        if obj.get("kind") == "CSIDriver" and obj["metadata"].get("name") == DRIVER:
            driver_audiences = check_csidriver(filename, obj, report)
    if driver_audiences is not None:
        for filename, found in values:
            if found is not None and found != driver_audiences:
                report.error(filename, "driver chart values", "tokenRequests",
                             f"audiences {found} differ from the CSIDriver's {driver_audiences}")


def csi_volumes(pod, path, ns, classes):
    """(field, what is wrong) for each of the pod's volumes of the driver."""
    for i, volume in enumerate(pod.get("volumes") or []):
        csi = volume.get("csi") or {}
        if csi.get("driver") != DRIVER:
            continue
        at = f"{path}.volumes[{i}].csi"
        if csi.get("readOnly") is not True:
            yield f"{at}.readOnly", "must be true (the driver refuses other mounts)"
        spc = (csi.get("volumeAttributes") or {}).get("secretProviderClass")
        if not spc:
            yield f"{at}.volumeAttributes.secretProviderClass", "required"
        elif classes and (ns, spc) not in classes:
            yield (f"{at}.volumeAttributes.secretProviderClass",
                   f"no SecretProviderClass {spc} in namespace {ns} among the files")


def check_csidriver(filename, obj, report):
    """The driver's CSIDriver as the provider needs it; its token audiences."""
    spec = obj.get("spec") or {}
    if spec.get("podInfoOnMount") is not True:
        report.error(filename, name_of(obj), "spec.podInfoOnMount",
                     "must be true (the provider needs the pod and its service account)")
    if "Ephemeral" not in (spec.get("volumeLifecycleModes") or []):
        report.error(filename, name_of(obj), "spec.volumeLifecycleModes",
                     "must include Ephemeral")
    return audiences(filename, name_of(obj), "spec.tokenRequests", spec.get("tokenRequests"),
                     report)


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-versions", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    versions = args.kubernetes_versions.split()
    known = [Version(v) for v in kv.all_versions()]
    for version in versions:
        if not known[0] <= Version(kv.major_minor(version) + ".0") <= known[-1]:
            print(f"ERROR kubernetes-validate {kv.__version__} knows Kubernetes {known[0]} to "
                  f"{known[-1]}, not {version}")
            return 2
    report = Report()
    objects, values = [], []
    for filename in args.files:
        docs = load(filename, report)
        if docs is None:
            continue
        if filename.endswith("values.yaml"):
            for doc in docs:
                values.append((filename, check_values(filename, doc, report)))
            continue
        if not docs:
            report.error(filename, "file", None, "holds no object")
        for doc in docs:
            if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
                report.error(filename, "document", None, "an object needs apiVersion and kind")
                continue
            if doc["kind"] == "SecretProviderClass" and doc["apiVersion"].startswith(
                    "secrets-store.csi.x-k8s.io/"):
                valid = check_spc(filename, doc, versions, report)
            else:
                valid = check_builtin(filename, doc, versions, report)
            # The checks across files read objects of a known shape only.
            if valid:
                objects.append((filename, doc))
    check_together(objects, values, report)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
