//! Hugging Face Hub ids for `--model`: `microsoft/beit-base-patch16-224` (or `org/name@revision`)
//! is downloaded into the Hugging Face cache Python shares (`$HF_HOME/hub`, default
//! `~/.cache/huggingface/hub`), from `$HF_ENDPOINT` (default https://huggingface.co); a model
//! already cached is used without the network, and `HF_HUB_OFFLINE=1` never touches it.

use std::path::PathBuf;

/// The files of a model folder, and whether the folder needs them.
#[cfg(feature = "hub")]
const FILES: [(&str, bool); 3] = [("config.json", true), ("model.safetensors", true), ("preprocessor_config.json", false)];

/// Whether `s` has the shape of a Hub model id: `name` or `org/name`, each part of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `.` or `-`, at most 96 long.
fn is_hub_id(s: &str) -> bool {
    let part = |p: &str| {
        (1..=96).contains(&p.len())
            && !p.starts_with(['.', '-'])
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let mut parts = s.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if part(a) && part(b))
        || (part(s) && !s.contains('/'))
}

/// `--model`'s value as a folder: the path itself when it exists (or cannot be a Hub id:
/// the loader then names it), else the snapshot folder of the Hub model it names, fetched
/// into the cache if needed. Used as clap's value parser.
pub fn model_dir(arg: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(arg);
    let (id, revision) = arg.split_once('@').unwrap_or((arg, "main"));
    if path.exists() || !is_hub_id(id) || revision.is_empty() {
        return Ok(path);
    }
    fetch(id, revision)
}

/// Without the `hub` feature: no downloads.
#[cfg(not(feature = "hub"))]
fn fetch(id: &str, _revision: &str) -> Result<PathBuf, String> {
    Err(format!("no folder `{id}`, and this beit was built without Hugging Face Hub support (feature `hub`)"))
}

/// The snapshot folder of Hub model `id` at `revision`, downloading what the cache lacks.
/// An optional file the repository does not have is remembered as Python's
/// huggingface_hub does (an empty `.no_exist/<commit>/<file>`), so a cached model makes no
/// request at all.
#[cfg(feature = "hub")]
fn fetch(id: &str, revision: &str) -> Result<PathBuf, String> {
    use hf_hub::api::sync::{ApiBuilder, ApiError};
    use hf_hub::{Cache, Repo, RepoType};
    use std::io::IsTerminal;
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    let cache = Cache::from_env();
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let api = ApiBuilder::from_env().with_progress(std::io::stderr().is_terminal()).build();
    let api = api.map_err(|e| format!("Hugging Face Hub client: {e}"))?;
    let repo_dir = cache.path().join(repo.folder_name());
    let commit = || std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok().map(|c| c.trim().to_string());
    let no_exist = |file: &str| commit().map(|c| repo_dir.join(".no_exist").join(c).join(file));
    let mut dir: Option<PathBuf> = None;
    for (file, required) in FILES {
        if !required && no_exist(file).is_some_and(|p| p.exists()) {
            continue;
        }
        // hf-hub's `get` takes a cached file without a request; offline, only the cache is read.
        let got = if offline {
            cache.repo(repo.clone()).get(file).ok_or_else(|| "not in the cache and HF_HUB_OFFLINE is set".to_string())
        } else {
            match api.repo(repo.clone()).get(file) {
                Ok(p) => Ok(p),
                Err(ApiError::RequestError(e)) if !required && matches!(*e, ureq::Error::Status(404, _)) => {
                    if let Some(marker) = no_exist(file) {
                        let _ = marker.parent().map(std::fs::create_dir_all);
                        let _ = std::fs::write(marker, b"");
                    }
                    continue;
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let local = match got {
            Ok(p) => p,
            Err(_) if !required => continue,
            Err(e) => return Err(format!("{id}@{revision}: {file} from {endpoint}: {e}")),
        };
        let parent = local.parent().map(PathBuf::from);
        match &dir {
            Some(d) if Some(d) != parent.as_ref() => {
                return Err(format!("{id}@{revision}: the repository changed while downloading ({file} is in another snapshot); run again"))
            }
            _ => dir = parent,
        }
    }
    dir.ok_or_else(|| format!("{id}@{revision}: nothing downloaded"))
}

#[cfg(test)]
mod tests {
    use super::is_hub_id;

    #[test]
    fn hub_ids_and_paths() {
        for id in ["microsoft/beit-base-patch16-224", "gpt2", "org/name.v2", "a_b/c-d"] {
            assert!(is_hub_id(id), "{id}");
        }
        for not in ["/abs/path", "./rel", "../up", "a/b/c", "", "org/", "/x", ".hidden/x", "org/-x", "with space/x"] {
            assert!(!is_hub_id(not), "{not}");
        }
    }
}
