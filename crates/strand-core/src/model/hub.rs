//! Resolving `--model`: a directory, or a Hugging Face hub id found offline
//! in the local cache.
//!
//! The cache layout is the one `huggingface_hub` writes:
//! `$HF_HUB_CACHE/models--ORG--NAME/snapshots/REV/` with `refs/main` holding
//! the revision to use. strand never downloads anything itself.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The hub cache directory: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_from(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    if let Some(p) = var("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = var("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// Turns a `--model` argument into a directory holding `config.json`.
///
/// An existing path is used as it is. Otherwise an `ORG/NAME` id is looked
/// up in the hub cache, honouring `refs/main`; if it is not there the
/// error says how to download it.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let p = Path::new(model);
    if p.exists() {
        if !p.is_dir() {
            return Err(Error::ModelNotFound(format!(
                "{model}: is a file; --model takes a directory holding config.json and model.safetensors, or a hub id"
            )));
        }
        if !p.join("config.json").is_file() {
            return Err(Error::ModelNotFound(format!(
                "{model}: no config.json in this directory"
            )));
        }
        return Ok(p.to_path_buf());
    }
    let looks_like_id = model.split('/').count() == 2
        && !model.starts_with('.')
        && !model.starts_with('/')
        && model.split('/').all(|s| !s.is_empty());
    if !looks_like_id {
        return Err(Error::ModelNotFound(format!(
            "{model}: no such directory (and not a hub id of the form ORG/NAME)"
        )));
    }
    let cache = cache_dir().ok_or_else(|| {
        Error::ModelNotFound(format!(
            "{model}: cannot locate the Hugging Face cache (set HF_HUB_CACHE or HF_HOME)"
        ))
    })?;
    resolve_in_cache(model, &cache)
}

fn resolve_in_cache(id: &str, cache: &Path) -> Result<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let not_found = || {
        Error::ModelNotFound(format!(
            "{id} is not in the local Hugging Face cache ({}); strand works offline, so download it first: \
             `huggingface-cli download {id}` (or `hf download {id}`), or pass a directory to --model",
            cache.display()
        ))
    };
    let snapshots = repo.join("snapshots");
    if !snapshots.is_dir() {
        return Err(not_found());
    }
    let rev = match std::fs::read_to_string(repo.join("refs/main")) {
        Ok(r) => r.trim().to_string(),
        Err(_) => {
            // No refs/main (e.g. a download pinned to a revision): use the
            // only snapshot if there is exactly one, otherwise ask.
            let mut revs: Vec<_> = std::fs::read_dir(&snapshots)
                .map_err(|e| Error::io(&snapshots, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match revs.len() {
                0 => return Err(not_found()),
                1 => revs.remove(0),
                _ => {
                    revs.sort();
                    return Err(Error::ModelNotFound(format!(
                        "{id}: {} has no refs/main and several snapshots ({}); pass the snapshot directory to --model",
                        repo.display(),
                        revs.join(", ")
                    )));
                }
            }
        }
    };
    let dir = snapshots.join(&rev);
    if !dir.join("config.json").is_file() {
        return Err(Error::ModelNotFound(format!(
            "{id}: snapshot {} has no config.json (incomplete download?); run `huggingface-cli download {id}` again",
            dir.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
        };
        assert_eq!(
            cache_dir_from(env(&[
                ("HF_HUB_CACHE", "/a"),
                ("HF_HOME", "/b"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(
            cache_dir_from(env(&[("HF_HOME", "/b"), ("HOME", "/h")])),
            Some(PathBuf::from("/b/hub"))
        );
        assert_eq!(
            cache_dir_from(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/huggingface/hub"))
        );
    }

    #[test]
    fn resolves_refs_main() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--name");
        std::fs::create_dir_all(repo.join("snapshots/abc")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/old")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc\n").unwrap();
        std::fs::write(repo.join("snapshots/abc/config.json"), "{}").unwrap();
        let got = resolve_in_cache("org/name", tmp.path()).unwrap();
        assert_eq!(got, repo.join("snapshots/abc"));

        let e = resolve_in_cache("org/other", tmp.path()).unwrap_err();
        assert!(
            e.to_string().contains("huggingface-cli download org/other"),
            "{e}"
        );
    }
}
