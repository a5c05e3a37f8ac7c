//! `jvm-guard mutate`: the offline preview's flags and glue (SPEC §6).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::serve::RegistryArgs;
use super::DEFAULT_TOOLS_IMAGE;
use crate::config::{Defaults, ServerSettings};
use crate::manifest::{self, ManifestError, Preview};
use crate::mutate::{ImageRequest, ResolvedImages};
use crate::registry::{PodImages, RegistryConfig, Resolver};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
    /// The JSONPatch (single Pod input only).
    Patch,
}

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Manifest file (multi-document YAML or JSON), or - for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub file: PathBuf,
    /// A Namespace manifest whose annotations configure the mutation. Without it, the
    /// built-in defaults apply as if the namespace had opted in.
    #[arg(long, value_name = "NS.yaml", env = "JVM_GUARD_NAMESPACE")]
    pub namespace: Option<PathBuf>,
    /// Cluster-wide defaults: a YAML map of jvm-guard keys (prefix optional), and launcher
    /// `profiles:`, as for `serve --defaults`; unknown keys and invalid values are errors.
    #[arg(long, value_name = "FILE", env = "JVM_GUARD_DEFAULTS")]
    pub defaults: Option<PathBuf>,
    /// Permit `dump-volume: hostPath:<path>`, as `serve --allow-host-path` does.
    #[arg(long, env = "JVM_GUARD_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,
    /// Image of the injected tools init container.
    #[arg(
        long,
        env = "JVM_GUARD_TOOLS_IMAGE",
        value_name = "IMAGE",
        default_value = DEFAULT_TOOLS_IMAGE
    )]
    pub tools_image: String,
    /// The documents as YAML or JSON, or the JSONPatch (a single Pod input only).
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// An error that names the file it came from; printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

pub(super) fn read_input(path: &Path) -> Result<String, InputError> {
    let name = path.display().to_string();
    let result = if name == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|e| InputError {
        file: if name == "-" { "<stdin>".into() } else { name },
        message: e.to_string(),
    })
}

fn in_file(path: &Path) -> impl Fn(ManifestError) -> InputError + '_ {
    move |e| InputError {
        file: if path.as_os_str() == "-" {
            "<stdin>".into()
        } else {
            path.display().to_string()
        },
        message: e.to_string(),
    }
}

/// Runs `jvm-guard mutate`: the output on stdout, warnings on stderr.
pub fn run_mutate(args: &MutateArgs) -> Result<(String, Vec<String>), InputError> {
    let defaults = match &args.defaults {
        None => Defaults::default(),
        Some(path) => Defaults::from_yaml(&read_input(path)?)
            .and_then(|d| d.check_server(args.allow_host_path).map(|()| d))
            .map_err(|e| InputError {
                file: path.display().to_string(),
                message: e.to_string(),
            })?,
    };
    let namespace = match &args.namespace {
        None => None,
        Some(path) => Some(manifest::parse_namespace(&read_input(path)?).map_err(in_file(path))?),
    };
    let preview = Preview {
        namespace,
        settings: ServerSettings {
            allow_host_path: args.allow_host_path,
            webhook_namespace: None,
            tools_image: Some(args.tools_image.clone()),
            profiles: defaults.profiles(),
        },
        defaults,
    };
    let text = read_input(&args.file)?;
    let docs = manifest::parse_documents(&text).map_err(in_file(&args.file))?;
    let single_pod = docs.len() == 1 && docs[0].get("kind").and_then(|k| k.as_str()) == Some("Pod");
    if matches!(args.output, OutputFormat::Patch) && !single_pod {
        let found = match docs.as_slice() {
            [one] => manifest::describe(one),
            many => format!("{} documents", many.len()),
        };
        return Err(in_file(&args.file)(ManifestError::PatchNeedsOnePod(found)));
    }
    let images = match args.registry.config(None) {
        Some(config) => {
            resolve_images(config, preview.images_to_resolve(&docs)).map_err(|message| {
                InputError {
                    file: args.file.display().to_string(),
                    message,
                }
            })?
        }
        // Offline, nothing is looked up: each image's config is unknown, and each container the
        // preview guards says so in its reasons and one warning.
        None => {
            let mut images = ResolvedImages::default();
            for request in preview.images_to_resolve(&docs) {
                images.insert(request, Err(OFFLINE.to_string()));
            }
            images
        }
    };
    let out = preview
        .run_with(docs, &images)
        .map_err(in_file(&args.file))?;
    let warnings = out
        .warnings
        .iter()
        .map(|(object, w)| format!("{object}: {w}"))
        .collect();
    let rendered = match args.output {
        OutputFormat::Yaml => manifest::to_yaml(&out.documents),
        OutputFormat::Json => manifest::to_json(&out.documents),
        OutputFormat::Patch => {
            serde_json::to_string_pretty(&out.patches[0]).expect("patches serialize") + "\n"
        }
    };
    Ok((rendered, warnings))
}

/// Looks the images up on a runtime made for this call only: `mutate` is otherwise plain.
/// Why an image's config is unknown with `--offline`.
const OFFLINE: &str = "not looked up: --offline";

fn resolve_images(
    config: RegistryConfig,
    requests: Vec<ImageRequest>,
) -> Result<ResolvedImages, String> {
    if requests.is_empty() {
        return Ok(ResolvedImages::default());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime for registry lookups: {e}"))?;
    let images = runtime.block_on(async {
        let resolver = Resolver::new(config);
        let pod = PodImages {
            requests,
            ..Default::default()
        };
        resolver.resolve(&pod).await
    });
    // Lookups past the budget go on in the background; they must not hold the exit.
    runtime.shutdown_background();
    Ok(images)
}
