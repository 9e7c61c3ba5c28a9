//! Hub ids as models: `owner/name` or `owner/name@revision` resolves to a snapshot
//! directory of the standard Hugging Face cache, the one `huggingface_hub` (Python) and
//! `hf-hub` (Rust) share:
//!
//! ```text
//! <cache>/models--owner--name/refs/<revision>              the commit hash, as text
//! <cache>/models--owner--name/snapshots/<commit>/<file>    links into blobs/
//! <cache>/models--owner--name/blobs/<etag>                 the files' contents
//! ```
//!
//! `<cache>` is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`. A
//! snapshot that already holds the checkpoint is used without touching the network;
//! otherwise the missing files are downloaded into it with `hf-hub`, unless
//! `HF_HUB_OFFLINE=1`. When that cannot be done, the error says which files to fetch, from
//! where, with a command that does it, and which cache was searched.

use std::collections::HashSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::checkpoint::{
    self, CONFIG, GENERATION, PREPROCESSOR, PROCESSOR, SPECIAL_TOKENS, TOKENIZER, TOKENIZER_CONFIG,
    WEIGHTS, WEIGHTS_INDEX,
};
use crate::{Error, Result};

/// The model to use when none is given: BLIP base (ViT-B/16 at 384 pixels, 990 MB of f32
/// weights). `Salesforce/blip-image-captioning-large` runs the same way and captions
/// somewhat better, but it is 1.8 GB and much slower on a CPU (its ViT-L encoder does
/// about three times the work per image).
pub const DEFAULT_MODEL: &str = "Salesforce/blip-image-captioning-base";

/// The hub, unless `HF_ENDPOINT` names a mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Checkpoint files read when the repository has them (transformers wants them; a
/// VisionEncoderDecoder's generation_config.json holds its caption lengths).
const OPTIONAL: [&str; 3] = [TOKENIZER_CONFIG, SPECIAL_TOKENS, GENERATION];

/// Pickled weights, which are never read.
const PICKLED: &str = "pytorch_model.bin";

/// Where to look for hub models and whether the network may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub cache directory, the one holding `models--owner--name/`.
    pub cache_dir: PathBuf,
    /// Never use the network (`HF_HUB_OFFLINE=1`): only the cache is read.
    pub offline: bool,
    /// The hub's address (`HF_ENDPOINT`), without a trailing slash.
    pub endpoint: String,
    /// Progress bars on stderr while downloading.
    pub progress: bool,
}

impl HubSettings {
    /// The settings the Hugging Face tools use, from the environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`HubSettings::from_env`], reading variables through `var`:
    /// `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `HF_HOME/hub`, else
    /// `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE`
    /// (1, on, yes or true); `HF_ENDPOINT`. Empty variables count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home(&var).join("hub"));
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        });
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self {
            cache_dir,
            offline,
            endpoint,
            progress: true,
        }
    }
}

/// `HF_HOME`, else `XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home(var: &impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(home) = var("HF_HOME") {
        return home.into();
    }
    let cache = var("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| {
        var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(|home| Path::new(&home).join(".cache"))
    });
    cache
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("huggingface")
}

/// A model repository on the hub, `owner/name`, at a branch, tag or commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    /// `main` unless the spec said `@revision`.
    pub revision: String,
}

impl HubId {
    /// Parses `owner/name` or `owner/name@revision`; `None` for anything else. Names
    /// follow the hub's rules: letters, digits, `-`, `_` and `.`, no `--` or `..`, not
    /// starting or ending with `-` or `.`, 96 characters at most.
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) => (repo, revision),
            None => (spec, "main"),
        };
        let (owner, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
                && !p.contains("--")
                && !p.contains("..")
        };
        // A revision becomes a path under refs/: no empty, `.` or `..` components.
        let revision_ok = !revision.is_empty()
            && !revision.chars().any(|c| c.is_whitespace() || c == '\\')
            && revision
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        (part_ok(owner) && part_ok(name) && repo.len() <= 96 && revision_ok).then(|| Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The part after the slash, e.g. `blip-image-captioning-base`.
    pub fn name(&self) -> &str {
        self.repo.split_once('/').map_or(&self.repo, |(_, n)| n)
    }

    /// The model's page on the hub.
    pub fn url(&self, endpoint: &str) -> String {
        match self.revision.as_str() {
            "main" => format!("{endpoint}/{}", self.repo),
            rev => format!("{endpoint}/{}/tree/{rev}", self.repo),
        }
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// `<cache>/models--owner--name`, named as `hf-hub` names it.
    pub fn cache_dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.hf_repo().folder_name())
    }

    /// The snapshot directory the cache's `refs/<revision>` points to (or the revision
    /// itself when it is a commit hash), whether or not it exists; `None` without a ref.
    pub fn snapshot_dir(&self, cache: &Path) -> Option<PathBuf> {
        let repo_dir = self.cache_dir(cache);
        let commit = match std::fs::read_to_string(repo_dir.join("refs").join(&self.revision)) {
            Ok(commit) => commit.trim().to_string(),
            Err(_) if is_commit_hash(&self.revision) => self.revision.clone(),
            Err(_) => return None,
        };
        (!commit.is_empty()).then(|| repo_dir.join("snapshots").join(commit))
    }
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves a `--model` value to a checkpoint directory, with the settings of the
/// environment ([`HubSettings::from_env`]); see [`resolve_model_with`].
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_with(spec, &HubSettings::from_env())
}

/// Resolves a `--model` value to a checkpoint directory:
/// - an existing directory is returned as it is (it wins over a hub id of the same name);
/// - `owner/name[@revision]` is looked up in the hub cache, and the snapshot is returned
///   when it holds `config.json`, the weights (`model.safetensors` or every shard of
///   `model.safetensors.index.json`), `tokenizer.json` and `preprocessor_config.json`,
///   without touching the network;
/// - otherwise, unless offline, the missing files are downloaded into that cache first.
///
/// Errors say what to download, from where, with a ready-to-run command.
pub fn resolve_model_with(spec: &str, settings: &HubSettings) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::file(path, "is a file, not a checkpoint directory"));
    }
    let Some(id) = HubId::parse(spec) else {
        return Err(Error::file(
            path,
            "is not a checkpoint directory or hub id (owner/name or owner/name@revision)",
        ));
    };
    let snapshot = id.snapshot_dir(&settings.cache_dir);
    let missing = match &snapshot {
        Some(dir) => missing_files(dir),
        None => required_files(),
    };
    if let (Some(dir), true) = (&snapshot, missing.is_empty()) {
        return Ok(dir.clone());
    }
    if settings.offline {
        return Err(not_available(
            &id,
            settings,
            snapshot.as_deref(),
            &missing,
            "HF_HUB_OFFLINE is set, so nothing was downloaded",
        ));
    }
    download(&id, settings).map_err(|failure| match failure {
        Failure::Fetch(reason) => {
            not_available(&id, settings, snapshot.as_deref(), &missing, &reason)
        }
        Failure::Unusable(reason) => {
            Error::Other(format!("{}: {reason}", id.url(&settings.endpoint)))
        }
    })
}

/// The files every checkpoint needs, as the hub names them.
fn required_files() -> Vec<String> {
    [CONFIG, WEIGHTS, TOKENIZER, PREPROCESSOR]
        .map(String::from)
        .to_vec()
}

/// The needed files `dir` lacks: config, weights (one file or every shard), tokenizer and
/// image processor config (`processor_config.json` stands in for it, as when loading).
fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let mut need = |name: &str, present: bool| {
        if !present {
            missing.push(name.to_string());
        }
    };
    need(CONFIG, dir.join(CONFIG).is_file());
    match checkpoint::weight_files(dir) {
        Ok(files) => {
            for file in files {
                need(&relative(dir, &file), file.is_file());
            }
        }
        Err(_) => need(WEIGHTS, false),
    }
    need(TOKENIZER, dir.join(TOKENIZER).is_file());
    need(
        PREPROCESSOR,
        dir.join(PREPROCESSOR).is_file() || dir.join(PROCESSOR).is_file(),
    );
    missing
}

/// `file`'s name inside `dir`, as the repository names it.
fn relative(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// The error for a model that is neither cached nor downloadable: what to fetch, from
/// where, how, and what was searched.
fn not_available(
    id: &HubId,
    settings: &HubSettings,
    snapshot: Option<&Path>,
    missing: &[String],
    reason: &str,
) -> Error {
    // The weights as the repository has them: sharded when the cache holds an index.
    let weights = match snapshot {
        Some(dir) if !dir.join(WEIGHTS).is_file() && dir.join(WEIGHTS_INDEX).is_file() => {
            let shards = checkpoint::weight_files(dir).unwrap_or_default();
            std::iter::once(WEIGHTS_INDEX.to_string())
                .chain(shards.iter().map(|shard| relative(dir, shard)))
                .collect()
        }
        _ => vec![WEIGHTS.to_string()],
    };
    let mut files = vec![CONFIG.to_string()];
    files.extend(weights);
    files.extend([TOKENIZER, TOKENIZER_CONFIG, SPECIAL_TOKENS, PREPROCESSOR].map(String::from));

    let searched = match snapshot {
        Some(dir) => format!("{} (missing: {})", dir.display(), missing.join(", ")),
        None => format!(
            "{} (no snapshot for revision {})",
            id.cache_dir(&settings.cache_dir).display(),
            id.revision
        ),
    };
    let local = format!("weights/{}", id.name());
    let revision = match id.revision.as_str() {
        "main" => String::new(),
        rev => format!(" --revision {rev}"),
    };
    Error::Other(format!(
        "model {repo}: no directory of that name, not in the Hugging Face cache, and {reason}.\n\
         \x20 searched: {searched}\n\
         Download {list} from {url}, for example with\n\
         \x20   pip install huggingface_hub\n\
         \x20   hf download {repo} {files}{revision} --local-dir {local}\n\
         and pass --model {local}. Only safetensors weights are read: a pickled {PICKLED} is not.",
        repo = id.repo,
        list = files.join(", "),
        url = id.url(&settings.endpoint),
        files = files.join(" "),
    ))
}

/// Why a download did not give a checkpoint.
enum Failure {
    /// The hub could not be reached or refused: fetching by hand may work.
    Fetch(String),
    /// The repository is not a checkpoint this crate reads.
    Unusable(String),
}

fn fetch_failure(what: &str, e: impl Display) -> Failure {
    let e = e.to_string();
    let hint = if e.contains("status code 401") || e.contains("status code 403") {
        " (the model does not exist, or it is private or gated: check the id, or set HF_TOKEN)"
    } else if e.contains("status code 404") {
        " (no such model or revision)"
    } else {
        ""
    };
    Failure::Fetch(format!("{what} failed: {e}{hint}"))
}

/// Downloads the checkpoint files the cache's snapshot of `id` lacks, with `hf-hub`,
/// into the standard layout, and returns the snapshot directory.
fn download(id: &HubId, settings: &HubSettings) -> std::result::Result<PathBuf, Failure> {
    let cache = Cache::new(settings.cache_dir.clone());
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(settings.endpoint.clone())
        .with_token(token(&|name: &str| std::env::var(name).ok()))
        .with_progress(settings.progress)
        .with_user_agent("captioner", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| fetch_failure("starting the hub client", e))?;
    let repo = api.repo(id.hf_repo());
    let info = repo
        .info()
        .map_err(|e| fetch_failure(&format!("asking {} for the model", settings.endpoint), e))?;
    let remote: HashSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();

    let mut files = Vec::new();
    let sharded = if remote.contains(WEIGHTS) {
        files.push(WEIGHTS);
        false
    } else if remote.contains(WEIGHTS_INDEX) {
        files.push(WEIGHTS_INDEX);
        true
    } else if remote.contains(PICKLED) {
        let conversions = safetensors_revisions(id, settings, &api);
        return Err(Failure::Unusable(pickled_only(id, &conversions)));
    } else {
        return Err(Failure::Unusable(format!("has no {WEIGHTS}")));
    };
    let lacks = |name: &str| {
        Failure::Unusable(format!(
            "has no {name}: not a checkpoint in the Hugging Face layout captioner reads.{}",
            conversion(id)
        ))
    };
    for name in [CONFIG, TOKENIZER] {
        if !remote.contains(name) {
            return Err(lacks(name));
        }
        files.push(name);
    }
    if remote.contains(PREPROCESSOR) {
        files.push(PREPROCESSOR);
    } else if remote.contains(PROCESSOR) {
        files.push(PROCESSOR);
    } else {
        return Err(lacks(PREPROCESSOR));
    }
    files.extend(OPTIONAL.into_iter().filter(|name| remote.contains(name)));

    let snapshot = id
        .cache_dir(&settings.cache_dir)
        .join("snapshots")
        .join(&info.sha);
    let fetch = |name: &str| -> std::result::Result<(), Failure> {
        let want = snapshot.join(name);
        if want.is_file() {
            return Ok(());
        }
        let got = repo
            .download(name)
            .map_err(|e| fetch_failure(&format!("downloading {name}"), e))?;
        if got != want {
            return Err(Failure::Fetch(format!(
                "revision {} moved to another commit during the download (run again)",
                id.revision
            )));
        }
        Ok(())
    };
    for name in files {
        fetch(name)?;
    }
    if sharded {
        let shards = checkpoint::weight_files(&snapshot)
            .map_err(|e| Failure::Unusable(format!("{WEIGHTS_INDEX}: {e}")))?;
        for shard in shards {
            fetch(&relative(&snapshot, &shard))?;
        }
    }
    // hf-hub points refs/<revision> at the commit when it downloads a file; when
    // everything was already there, the ref may still be missing or stale.
    if id.revision != info.sha {
        cache
            .repo(id.hf_repo())
            .create_ref(&info.sha)
            .map_err(|e| fetch_failure("writing the cache's ref", e))?;
    }
    let missing = missing_files(&snapshot);
    if !missing.is_empty() {
        return Err(Failure::Fetch(format!(
            "after the download, {} still lacks {}",
            snapshot.display(),
            missing.join(", ")
        )));
    }
    Ok(snapshot)
}

/// The error for a repository whose weights are only pickled: the hub's safetensors
/// conversions of it where there are some, and the conversion with transformers.
fn pickled_only(id: &HubId, conversions: &[String]) -> String {
    let mut msg = format!(
        "has only pickled weights ({PICKLED}), which captioner never reads (unpickling can \
         run code)."
    );
    if let Some(first) = conversions.first() {
        msg += &format!(
            " The hub's conversion to safetensors is at revision {first}: pass --model {}@{first}.",
            id.repo
        );
        if conversions.len() > 1 {
            msg += &format!(" (Others: {}.)", conversions[1..].join(", "));
        }
    }
    msg + &conversion(id)
}

/// How to write a repository's model, tokenizer and image processor in the layout read
/// here, with transformers.
fn conversion(id: &HubId) -> String {
    format!(
        " Or convert it once with transformers (model, tokenizer and image processor):\n\
         \x20   python -c \"from transformers import AutoModel as M, AutoTokenizer as T, AutoImageProcessor as P; \
         [c.from_pretrained('{repo}').save_pretrained('weights/{name}') for c in (M, T, P)]\"\n\
         and pass --model weights/{name}. (For BLIP, import BlipForConditionalGeneration as M.)",
        repo = id.repo,
        name = id.name()
    )
}

/// The revisions `refs/pr/N` of the repository's open pull requests about safetensors
/// (the hub's conversion bot opens one per repository asked for) that hold
/// model.safetensors, newest first; none when the hub cannot say.
fn safetensors_revisions(
    id: &HubId,
    settings: &HubSettings,
    api: &hf_hub::api::sync::Api,
) -> Vec<String> {
    let url = format!("{}/api/models/{}/discussions", settings.endpoint, id.repo);
    let mut request = ureq::get(&url).timeout(std::time::Duration::from_secs(20));
    if let Some(token) = token(&|name: &str| std::env::var(name).ok()) {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let Ok(listing) = request
        .call()
        .map_err(|_| ())
        .and_then(|r| r.into_json::<serde_json::Value>().map_err(|_| ()))
    else {
        return Vec::new();
    };
    let mut numbers: Vec<u64> = listing["discussions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["isPullRequest"] == true && d["status"] == "open")
        .filter(|d| {
            d["title"]
                .as_str()
                .is_some_and(|t| t.to_ascii_lowercase().contains("safetensors"))
        })
        .filter_map(|d| d["num"].as_u64())
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers
        .into_iter()
        .take(5)
        .map(|n| format!("refs/pr/{n}"))
        .filter(|revision| {
            let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, revision.clone());
            api.repo(repo).info().is_ok_and(|info| {
                info.siblings
                    .iter()
                    .any(|s| s.rfilename == WEIGHTS || s.rfilename == WEIGHTS_INDEX)
            })
        })
        .collect()
}

/// The hub token, for private and gated models: `HF_TOKEN`, else the file at
/// `HF_TOKEN_PATH`, else `HF_HOME/token` (where `hf auth login` writes it).
fn token(var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(token) = var("HF_TOKEN") {
        return Some(token.trim().to_string());
    }
    let path = var("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home(&var).join("token"));
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}
