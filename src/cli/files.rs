//! Reading the files the offline commands take, with errors that name the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl FileError {
    pub fn parse(path: &Path, message: impl Into<String>) -> Self {
        FileError::Parse {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A manifest of one kind (`what` names it in the error: "not a SovereignCluster: …").
pub fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, FileError> {
    serde_yaml::from_str(&read(path)?)
        .map_err(|e| FileError::parse(path, format!("not a {what}: {e}")))
}
