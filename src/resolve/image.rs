//! Image references as containerd's CRI normalises them: `nginx` → `docker.io/library/nginx:latest`.
//! Pure.

use serde::Serialize;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// Tag or digest.
    pub reference: String,
}

/// Parse `[registry/]repo[:tag|@digest]` the way containerd's CRI normalizes it.
pub fn parse_image(image: &str) -> Result<ImageRef, String> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(format!("image {image:?} is not a reference"));
    }
    let (name, reference) = if let Some((n, d)) = image.split_once('@') {
        (n, d.to_string())
    } else {
        match image.rfind(':') {
            Some(i) if !image[i..].contains('/') => (&image[..i], image[i + 1..].to_string()),
            _ => (image, "latest".to_string()),
        }
    };
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let repository = if registry == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    Ok(ImageRef {
        registry,
        repository,
        reference,
    })
}

impl ImageRef {
    /// A digest reference needs only `pull`; a tag also needs `resolve`.
    pub fn is_digest(&self) -> bool {
        self.reference.contains(':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        assert_eq!(parse_image("nginx").unwrap().repository, "library/nginx");
        let r = parse_image("harbor.x:5000/a/b@sha256:ab").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.reference.as_str()),
            ("harbor.x:5000", "sha256:ab")
        );
        assert!(r.is_digest() && !parse_image("a:1").unwrap().is_digest());
    }
}
