//! Model names as Ollama normalizes them: `[host/][namespace/]model[:tag]`, with the
//! defaults `registry.ollama.ai`, `library` and `latest`, compared without regard to
//! case. A request may say `tiny-50m`, `library/tiny-50m` or
//! `registry.ollama.ai/library/tiny-50m:latest`; `/api/ps` and `/api/tags` list all of
//! them as `tiny-50m:latest`, while the `model` field of a response echoes the request.
//! Every place that compares or joins model names goes through [`same_model`] or
//! [`display`].

/// The registry a name without a host belongs to.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace a name without one belongs to.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag a name without one gets.
pub const DEFAULT_TAG: &str = "latest";

/// The parts of a model name, defaults filled in, case as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// Registry host (`registry.ollama.ai`, `localhost:5000`).
    pub host: String,
    /// Namespace (`library` for the official models).
    pub namespace: String,
    /// Model (`qwen2.5`, `tiny-50m`).
    pub model: String,
    /// Tag (`latest`, `7b-instruct-q4_K_M`).
    pub tag: String,
}

impl ModelName {
    /// Parses any form a request may use; an `@sha256:…` digest suffix is dropped.
    pub fn parse(name: &str) -> ModelName {
        let name = name.trim();
        let name = name.split_once('@').map_or(name, |(n, _)| n);
        // The tag follows the last ':' that comes after the last '/' (a host may have a port).
        let slash = name.rfind('/');
        let (path, tag) = match name.rfind(':') {
            Some(c) if slash.is_none_or(|s| c > s) => (&name[..c], &name[c + 1..]),
            _ => (name, ""),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            // More than three parts: the host is the first, the model the last.
            [h, .., m] => (*h, parts[parts.len() - 2], *m),
            [] => (DEFAULT_HOST, DEFAULT_NAMESPACE, ""),
        };
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        ModelName {
            host: or(host, DEFAULT_HOST),
            namespace: or(namespace, DEFAULT_NAMESPACE),
            model: model.to_string(),
            tag: or(tag, DEFAULT_TAG),
        }
    }

    /// The short form `/api/ps` and `/api/tags` print: `model:tag` for the official
    /// library, `namespace/model:tag` on the default registry, the full name elsewhere.
    pub fn display(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// The full name in lower case: the key two names are equal by.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
        .to_lowercase()
    }
}

/// The short form `/api/ps` lists for `name` (`tiny-50m` → `tiny-50m:latest`).
pub fn display(name: &str) -> String {
    ModelName::parse(name).display()
}

/// The comparison key of `name`: the full name in lower case.
pub fn key(name: &str) -> String {
    ModelName::parse(name).key()
}

/// Whether two names denote the same model as Ollama resolves them
/// (`tiny-50m` ≡ `tiny-50m:latest` ≡ `library/tiny-50m` ≡ `TINY-50M`).
pub fn same_model(a: &str, b: &str) -> bool {
    a == b || key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_library_model_is_the_same_model() {
        for form in [
            "tiny-50m",
            "tiny-50m:latest",
            "library/tiny-50m",
            "library/tiny-50m:latest",
            "registry.ollama.ai/library/tiny-50m",
            "registry.ollama.ai/library/tiny-50m:latest",
            "TINY-50M",
            "tiny-50m:Latest",
            "tiny-50m@sha256:6ee4bb7b",
        ] {
            assert!(same_model(form, "tiny-50m:latest"), "{form}");
            assert_eq!(display(form).to_lowercase(), "tiny-50m:latest", "{form}");
        }
    }

    #[test]
    fn tags_namespaces_and_hosts_tell_models_apart() {
        assert!(!same_model("tiny-50m", "tiny-50m:q8_0"));
        assert!(!same_model("tiny-50m", "someone/tiny-50m"));
        assert!(!same_model("qwen2.5:7b", "qwen2.5:7b-instruct-q4_K_M"));
        assert_eq!(display("someone/tiny-50m"), "someone/tiny-50m:latest");
        assert_eq!(
            display("localhost:5000/team/tiny-50m"),
            "localhost:5000/team/tiny-50m:latest"
        );
        assert_eq!(
            display("localhost:5000/team/tiny-50m:q4_K_M"),
            "localhost:5000/team/tiny-50m:q4_K_M"
        );
        assert_eq!(
            display("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
        );
        assert_eq!(
            display("qwen2.5:7b-instruct-q4_K_M"),
            "qwen2.5:7b-instruct-q4_K_M"
        );
    }
}
