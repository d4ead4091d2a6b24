//! Image datasets on disk: an ImageFolder tree (one sub-folder per class) or a flat folder
//! of unlabelled images (pretraining).

use beit_engine::{Error, Result};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "JPEG"];

/// A list of image files, with class ids for labelled datasets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// `(file, class)` pairs, sorted by path.
    pub items: Vec<(PathBuf, Option<usize>)>,
    /// Class names (sub-folder names, sorted); empty for a flat folder.
    pub classes: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e) || EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io { path: dir.display().to_string(), source };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>().map_err(io)?;
    out.sort();
    Ok(out)
}

impl ImageFolder {
    /// `root/<class>/<image>`: classes are the sorted sub-folder names.
    pub fn labelled(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let mut items = Vec::new();
        let mut classes = Vec::new();
        for dir in list(root)?.into_iter().filter(|p| p.is_dir()) {
            let class = classes.len();
            classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            items.extend(list(&dir)?.into_iter().filter(|p| is_image(p)).map(|p| (p, Some(class))));
        }
        Self::non_empty(root, ImageFolder { items, classes })
    }

    /// Every image directly in `root`, unlabelled.
    pub fn flat(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let items = list(root)?.into_iter().filter(|p| is_image(p)).map(|p| (p, None)).collect();
        Self::non_empty(root, ImageFolder { items, classes: Vec::new() })
    }

    fn non_empty(root: &Path, f: ImageFolder) -> Result<Self> {
        if f.items.is_empty() {
            return Err(Error::Format { file: root.display().to_string(), msg: "no PNG or JPEG images found".into() });
        }
        Ok(f)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no images (never, for a constructed folder).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
