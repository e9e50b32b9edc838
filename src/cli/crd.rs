//! `sovereign crd`: the CRDs as YAML, generated from the Rust types.

use std::path::PathBuf;

use crate::api;

#[derive(clap::Args, Debug)]
pub struct CrdArgs {
    /// Write one `<name>.yaml` per CRD into this directory instead of printing a multi-document stream.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("cannot serialise CRD {name}: {source}")]
    Yaml {
        name: String,
        source: serde_yaml::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every CRD as `(file name, YAML document)`.
pub fn documents() -> Result<Vec<(String, String)>, CrdError> {
    api::crds()
        .iter()
        .map(|crd| {
            let yaml = api::crd_yaml(crd).map_err(|source| CrdError::Yaml {
                name: api::crd_file_name(crd),
                source,
            })?;
            Ok((api::crd_file_name(crd), yaml))
        })
        .collect()
}

pub fn run(args: &CrdArgs) -> Result<(), CrdError> {
    let docs = documents()?;
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
                path: dir.clone(),
                source,
            })?;
            for (name, yaml) in docs {
                let path = dir.join(name);
                std::fs::write(&path, yaml).map_err(|source| CrdError::Write { path, source })?;
            }
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for (_, yaml) in docs {
                // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
                if write!(out, "---\n{yaml}").is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}
