//! One lookup: the reference parsed as the runtime does, the manifest (through an index for
//! the pod's platform) and the config blob's ENTRYPOINT and CMD.

use oci_client::manifest::{ImageIndexEntry, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use crate::mutate::{ImageCommand, Platform};

/// Config blobs above this are not image configs worth reading.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Parses an image reference as the container runtime does: no registry host means Docker
/// Hub (`docker.io`, `library/` for single names), no tag means `latest`.
pub fn parse_reference(image: &str) -> Result<Reference, String> {
    image
        .parse::<Reference>()
        .map_err(|e| format!("image reference {image:?}: {e}"))
}

/// The manifest of an index for `platform`; `variant` is not in a node selector, so the first
/// entry of the OS and architecture wins.
pub(super) fn pick<'a>(
    entries: &'a [ImageIndexEntry],
    platform: &Platform,
) -> Option<&'a ImageIndexEntry> {
    entries.iter().find(|e| {
        e.platform.as_ref().is_some_and(|p| {
            p.os.to_string() == platform.os && p.architecture.to_string() == platform.architecture
        })
    })
}

#[derive(Deserialize)]
pub(super) struct ImageConfigBlob {
    #[serde(default)]
    config: Option<ImageConfigFields>,
}

#[derive(Deserialize)]
pub(super) struct ImageConfigFields {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

/// ENTRYPOINT and CMD from an image config blob.
pub fn parse_image_config(bytes: &[u8]) -> Result<ImageCommand, String> {
    let blob: ImageConfigBlob =
        serde_json::from_slice(bytes).map_err(|e| format!("the image config is not JSON: {e}"))?;
    let fields = blob.config;
    let mut entrypoint = fields
        .as_ref()
        .and_then(|f| f.entrypoint.clone())
        .unwrap_or_default();
    // `ENTRYPOINT [""]` resets it; containerd reads it as none.
    if entrypoint == [""] {
        entrypoint.clear();
    }
    let cmd = fields.and_then(|f| f.cmd).unwrap_or_default();
    Ok(ImageCommand { entrypoint, cmd })
}

/// An error and its causes on one line: reqwest puts the useful part in the sources.
pub(super) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads what `reference` runs on `platform`: manifest (through an index if need be), then
/// the config blob.
pub(super) async fn fetch(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    auth: &RegistryAuth,
) -> Result<ImageCommand, String> {
    let failed = |what: &str, e: oci_client::errors::OciDistributionError| {
        format!("{what} of {reference}: {}", describe(&e))
    };
    let (manifest, _) = client
        .pull_manifest(reference, auth)
        .await
        .map_err(|e| failed("manifest", e))?;
    let manifest = match manifest {
        OciManifest::Image(m) => m,
        OciManifest::ImageIndex(index) => {
            let entry = pick(&index.manifests, platform).ok_or_else(|| {
                format!(
                    "{reference} has no {}/{} image",
                    platform.os, platform.architecture
                )
            })?;
            let by_digest = reference.clone_with_digest(entry.digest.clone());
            match client.pull_manifest(&by_digest, auth).await {
                Ok((OciManifest::Image(m), _)) => m,
                Ok((OciManifest::ImageIndex(_), _)) => {
                    return Err(format!("{by_digest} is an index inside an index"))
                }
                Err(e) => return Err(failed("manifest", e)),
            }
        }
    };
    if manifest.config.size > MAX_CONFIG_BYTES as i64 {
        return Err(format!(
            "the config of {reference} is {} bytes",
            manifest.config.size
        ));
    }
    let mut config = Vec::new();
    client
        .pull_blob(reference, &manifest.config, &mut config)
        .await
        .map_err(|e| failed("config", e))?;
    parse_image_config(&config)
}
