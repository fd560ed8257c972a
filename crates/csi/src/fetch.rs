//! A pod's objects read through its identity's engines: the files and the versions of the
//! Mount answer.
//!
//! The AWSCURRENT (latest) values of the class are asked for together first, so that a cold
//! cache costs one BatchGetSecretValue per 20 secrets and one GetParameters per 10 parameters
//! (each falls back to one call per object where the policy refuses the batch); then each
//! object is read from the cache. A value fresh in the cache costs no call, which is what a
//! republish within the TTL gets. The failover region is asked only when the primary failed
//! with anything but an answer about the object itself (not found, invalid, undecryptable),
//! as the AWS provider fails over on such errors too; it does not ask both regions every time.

use std::sync::Arc;

use secretsfs_core::selector::VersionRef;
use secretsfs_core::source::SecretValue;
use secretsfs_core::{Error, ErrorKind};

use crate::failure::Failure;
use crate::identity::{Identities, Identity};
use crate::proto::{File, ObjectVersion};
use crate::spec::{ObjectSpec, ObjectType};

pub struct Fetched {
    pub files: Vec<File>,
    pub versions: Vec<ObjectVersion>,
}

/// Whether the failover region may answer in place of the primary: not when the primary
/// answered about the object itself.
fn fails_over(err: &Error) -> bool {
    !matches!(
        err.kind(),
        ErrorKind::NotFound
            | ErrorKind::InvalidSelector
            | ErrorKind::InvalidRequest
            | ErrorKind::Decryption
    )
}

pub async fn fetch(
    identities: &Identities,
    identity: &Identity,
    objects: &[ObjectSpec],
    regions: &[String],
    default_mode: u32,
) -> Result<Fetched, Failure> {
    prefetch(identities, identity, objects, &regions[0]).await?;
    // Together: during an outage of the primary, each object waits out its timeout at once,
    // not one after another.
    let values = futures::future::try_join_all(objects.iter().map(|object| async move {
        read(identities, identity, object, regions)
            .await
            .map_err(|f| f.about(&object.file_name))
    }))
    .await?;
    let mut fetched = Fetched {
        files: Vec::new(),
        versions: Vec::new(),
    };
    for (object, value) in objects.iter().zip(values) {
        // The driver takes permission bits alone (0 to 511).
        let mode = object.mode.unwrap_or(default_mode) & 0o777;
        for entry in &object.jmes_path {
            let bytes = crate::jmes::extract(value.payload.as_bytes(), &entry.path, &entry.alias)
                .map_err(|f| f.about(&entry.file_name))?;
            fetched.files.push(File {
                path: entry.file_name.clone(),
                mode: (entry.mode.unwrap_or(mode) & 0o777) as i32,
                contents: bytes.to_vec(),
            });
            fetched.versions.push(ObjectVersion {
                id: entry.file_name.clone(),
                version: value.version_id.clone(),
            });
        }
        fetched.files.push(File {
            path: object.file_name.clone(),
            mode: mode as i32,
            contents: value.payload.as_bytes().to_vec(),
        });
        fetched.versions.push(ObjectVersion {
            id: object.file_name.clone(),
            version: value.version_id.clone(),
        });
    }
    Ok(fetched)
}

/// The class's current values in the primary region, batched, into the cache; failures are
/// left for each object's own read to meet and report.
async fn prefetch(
    identities: &Identities,
    identity: &Identity,
    objects: &[ObjectSpec],
    region: &str,
) -> Result<(), Failure> {
    for object_type in [ObjectType::SecretsManager, ObjectType::ParameterStore] {
        let names: Vec<String> = objects
            .iter()
            .filter(|o| o.object_type == object_type)
            .filter(|o| VersionRef::of(o.version_label.clone(), o.version.clone()).is_current())
            .map(|o| o.name.clone())
            .collect();
        if names.len() < 2 {
            continue;
        }
        let engine = identities.engine(identity, region, object_type).await?;
        engine.prefetch_current(&names).await;
    }
    Ok(())
}

async fn read(
    identities: &Identities,
    identity: &Identity,
    object: &ObjectSpec,
    regions: &[String],
) -> Result<Arc<SecretValue>, Failure> {
    let primary = identities
        .engine(identity, &regions[0], object.object_type)
        .await?;
    let version = VersionRef::of(object.version_label.clone(), object.version.clone());
    let err = match primary.secret_value(&object.name, &version, false).await {
        Ok(served) => return Ok(served.value),
        Err(err) => err,
    };
    let Some(failover_region) = regions.get(1).filter(|_| fails_over(&err)) else {
        return Err(Failure::of_read(&err));
    };
    let (name, version) = match &object.failover {
        Some(failover) => (
            failover.name.as_str(),
            VersionRef::of(failover.version_label.clone(), failover.version.clone()),
        ),
        None => (object.name.as_str(), version),
    };
    tracing::info!(target: "secretsfs::csi",
        object = %object.file_name, region = %regions[0], failover_region = %failover_region,
        cause = %err.message(), "reading in the failover region");
    let failover = identities
        .engine(identity, failover_region, object.object_type)
        .await?;
    failover
        .secret_value(name, &version, false)
        .await
        .map(|served| served.value)
        .map_err(|failover_err| {
            let mut failure = Failure::of_read(&failover_err);
            failure.cause = format!(
                "{}: {}; {failover_region}: {}",
                regions[0],
                err.message(),
                failover_err.message()
            );
            failure
        })
}
