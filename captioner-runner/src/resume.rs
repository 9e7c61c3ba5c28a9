//! Opening an output for a run, resuming what an earlier run left.
//!
//! An existing output of the same format is resumed by default; `overwrite` starts over.
//! Resuming reads the output once and remembers which images are captioned (by `file`,
//! or by `image_id` for COCO results); the run then skips them. A run killed at any
//! moment leaves at most one cut-short record at the end: a last record without its
//! line break, or one that does not parse, is cut away before anything is appended.
//!
//! Failed images are tried again. So that no image appears twice, an output holding
//! error records is rewritten without them (to a temporary file renamed over it) before
//! the run appends; the retried images then get one new record each. Anything else that
//! does not parse, before the last record, means the file is not ours: that is an error,
//! and the file is left as it is.
//!
//! The json format writes a journal while it runs (JSON lines, `.OUT.partial.jsonl`
//! beside OUT) and the COCO results file from it at the end, atomically; the journal is
//! then removed. A journal left by a killed run is resumed like a JSON lines output; when
//! there is none but OUT exists, the new journal starts with OUT's entries.
//!
//! Tag files (sidecars) are their own record: an image whose tag file exists is skipped,
//! unless it is to be overwritten, appended to or prepended to.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use datasets::{Found, ImageIds};
use serde_json::Value;

use crate::output::{
    self, journal_path, sidecar_path, CocoResult, Format, JsonFileSink, JsonLine, LineKind,
    LineSink, SidecarSink, Sink, TagMode, CSV_HEADER,
};
use crate::{Error, Result};

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub format: Format,
    /// The output file; standard output when `None` (not for tag files).
    pub path: Option<PathBuf>,
    /// Start over instead of resuming (for tag files: replace them).
    pub overwrite: bool,
    /// Tag files: what to do with one that exists (`Overwrite` when `overwrite`).
    pub tag_mode: TagMode,
    /// Tag files' extension.
    pub sidecar_ext: String,
    /// COCO annotations naming the images' ids.
    pub ann: Option<ImageIds>,
}

impl OutputSpec {
    /// A COCO results file at `path` for the images of `refs`, their ids taken from
    /// the references; resumed unless `overwrite`.
    pub fn coco_results(path: PathBuf, refs: &datasets::References, overwrite: bool) -> Self {
        let ids = refs
            .images
            .iter()
            .map(|i| (i.file_name.clone(), i.id_json.clone()));
        Self {
            format: Format::Json,
            path: Some(path),
            overwrite,
            tag_mode: TagMode::Keep,
            sidecar_ext: "txt".into(),
            ann: Some(ImageIds::new(ids)),
        }
    }
}

/// What resuming found in the existing output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The output read (for json: the journal, or OUT that seeded it).
    pub from: PathBuf,
    /// Images captioned already, to skip.
    pub done: usize,
    /// Error records dropped (those images are tried again).
    pub retried: usize,
    /// Bytes of a cut-short last record cut away.
    pub cut: u64,
}

impl std::fmt::Display for Resumed {
    /// What a user is told when a run resumes.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "resuming {}: {} images done already",
            self.from.display(),
            self.done
        )?;
        if self.retried > 0 {
            write!(f, ", {} that failed before are tried again", self.retried)?;
        }
        if self.cut > 0 {
            write!(f, ", a cut-short last record ({} bytes) removed", self.cut)?;
        }
        Ok(())
    }
}

/// An output ready for a run.
pub struct Opened {
    pub sink: Box<dyn Sink>,
    pub gate: Gate,
    /// `Some` when an earlier run's output was resumed.
    pub resumed: Option<Resumed>,
}

/// Decides, before any decoding, what to do with each image found.
#[derive(Debug)]
pub struct Gate {
    done: HashSet<String>,
    key: Key,
    ann: Option<ImageIds>,
    /// Records carry `image_id` (json format, or annotations given).
    with_image_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    File,
    ImageId,
    /// Done when the tag file with this extension exists.
    Sidecar(String),
    Nothing,
}

/// An image to caption, as the run carries it.
#[derive(Debug, Clone)]
pub struct Todo {
    pub path: PathBuf,
    /// Its path relative to the folder argument it was found in.
    pub relative: PathBuf,
    pub file: String,
    pub image_id: Option<Value>,
}

/// The gate's answer.
#[derive(Debug)]
pub enum Check {
    Caption(Todo),
    /// Captioned by an earlier run.
    Done,
    /// Cannot be captioned into this output (the message names the file).
    Fail(Todo, String),
}

impl Gate {
    /// A gate letting every image through.
    pub fn all() -> Self {
        Self {
            done: HashSet::new(),
            key: Key::Nothing,
            ann: None,
            with_image_id: false,
        }
    }

    pub fn check(&self, found: &Found) -> Check {
        let file = found.path.display().to_string();
        let mut todo = Todo {
            path: found.path.clone(),
            relative: found.relative.clone(),
            file,
            image_id: None,
        };
        if self.with_image_id {
            match &self.ann {
                Some(ids) => match ids.lookup(&found.relative) {
                    Ok(id) => todo.image_id = Some(id.clone()),
                    Err(e) => {
                        let msg = format!("{}: {e}", todo.file);
                        return Check::Fail(todo, msg);
                    }
                },
                None => {
                    let stem = found.path.file_stem().unwrap_or_default();
                    todo.image_id = Some(Value::String(stem.to_string_lossy().into_owned()));
                }
            }
        }
        let done = match &self.key {
            Key::File => self.done.contains(&todo.file),
            Key::ImageId => todo
                .image_id
                .as_ref()
                .is_some_and(|id| self.done.contains(&id_key(id))),
            Key::Sidecar(ext) => sidecar_path(&found.path, ext).exists(),
            Key::Nothing => false,
        };
        if done {
            Check::Done
        } else {
            Check::Caption(todo)
        }
    }
}

/// How an image id is remembered: its JSON text, so `1` and `"1"` differ.
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Opens the output `spec` names: creates it, or resumes it, or starts it over.
pub fn open(spec: OutputSpec) -> Result<Opened> {
    let with_image_id = spec.format == Format::Json || spec.ann.is_some();
    let mut gate = Gate {
        ann: spec.ann,
        with_image_id,
        ..Gate::all()
    };
    let mut resumed = None;
    let sink: Box<dyn Sink> = match (spec.format, &spec.path) {
        (Format::Txt, Some(p)) => {
            return Err(Error::file(
                p,
                "tag files are written beside the images; leave out -o with --format txt",
            ))
        }
        (Format::Txt, None) => {
            let mode = if spec.overwrite {
                TagMode::Overwrite
            } else {
                spec.tag_mode
            };
            if mode == TagMode::Keep {
                gate.key = Key::Sidecar(spec.sidecar_ext.clone());
            }
            Box::new(SidecarSink {
                ext: spec.sidecar_ext,
                mode,
            })
        }
        (Format::Jsonl, None) => Box::new(LineSink::new(io::stdout(), "stdout", LineKind::Jsonl)),
        (Format::Csv, None) => {
            let mut sink = LineSink::new(io::stdout(), "stdout", LineKind::Csv);
            sink.header()?;
            Box::new(sink)
        }
        (Format::Json, None) => {
            Box::new(LineSink::new(io::stdout(), "stdout", LineKind::JsonArray))
        }
        (Format::Jsonl, Some(path)) => {
            let (file, r) = open_lines(
                path,
                spec.overwrite,
                LineKind::Jsonl,
                Key::File,
                &mut gate.done,
            )?;
            gate.key = Key::File;
            resumed = r;
            Box::new(LineSink::new(
                file,
                path.display().to_string(),
                LineKind::Jsonl,
            ))
        }
        (Format::Csv, Some(path)) => {
            let (file, r) = open_lines(
                path,
                spec.overwrite,
                LineKind::Csv,
                Key::File,
                &mut gate.done,
            )?;
            gate.key = Key::File;
            let mut sink = LineSink::new(file, path.display().to_string(), LineKind::Csv);
            if r.is_none() {
                sink.header()?;
            }
            resumed = r;
            Box::new(sink)
        }
        (Format::Json, Some(out)) => {
            let journal = journal_path(out);
            let mut seeded = false;
            if spec.overwrite {
                remove_if_exists(&journal)?;
            } else if !exists(&journal)? && non_empty(out)? {
                seed_journal(out, &journal)?;
                seeded = true;
            }
            let (file, r) = open_lines(
                &journal,
                false,
                LineKind::Jsonl,
                Key::ImageId,
                &mut gate.done,
            )?;
            gate.key = Key::ImageId;
            resumed = r.map(|r| Resumed {
                from: if seeded { out.clone() } else { r.from.clone() },
                ..r
            });
            Box::new(JsonFileSink {
                journal: LineSink::new(file, journal.display().to_string(), LineKind::Jsonl),
                journal_path: journal,
                out: out.clone(),
            })
        }
    };
    Ok(Opened {
        sink,
        gate,
        resumed,
    })
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(|e| Error::file(path, e))
}

fn non_empty(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::file(path, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::file(path, e)),
        _ => Ok(()),
    }
}

/// A JSON lines or CSV output opened for appending: new (or started over), or resumed
/// with `done` filled from it.
fn open_lines(
    path: &Path,
    overwrite: bool,
    kind: LineKind,
    key: Key,
    done: &mut HashSet<String>,
) -> Result<(File, Option<Resumed>)> {
    let err = |e| Error::file(path, e);
    if overwrite || !non_empty(path)? {
        return Ok((File::create(path).map_err(err)?, None));
    }
    let scan = match kind {
        LineKind::Csv => scan_csv(path, done)?,
        _ => scan_jsonl(path, &key, done)?,
    };
    let len = fs::metadata(path).map_err(err)?.len();
    if scan.errors.is_empty() {
        if scan.keep < len {
            let f = OpenOptions::new().write(true).open(path).map_err(err)?;
            f.set_len(scan.keep).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
    } else {
        rewrite_without(path, scan.keep, &scan.errors)?;
    }
    let file = OpenOptions::new().append(true).open(path).map_err(err)?;
    let resumed = Resumed {
        from: path.to_path_buf(),
        done: done.len(),
        retried: scan.errors.len(),
        cut: len - scan.keep,
    };
    // A CSV cut back to nothing has lost its header.
    if kind == LineKind::Csv && scan.keep == 0 {
        return Ok((file, None));
    }
    Ok((file, Some(resumed)))
}

struct Scan {
    /// Bytes of whole, well-formed records (a cut-short tail after them is dropped).
    keep: u64,
    /// Line numbers (from 1) of error records, to drop.
    errors: Vec<usize>,
}

fn not_ours(path: &Path, line: usize, what: &str) -> Error {
    Error::file(
        path,
        format!(
            "line {line} is not {what}; this is not an output to resume. \
             Start it over with --overwrite, or write to another file"
        ),
    )
}

/// Whether `bytes`, a last line without its line break, can be the start of a record
/// this program wrote (so cutting it away loses nothing of anyone else's).
fn starts_like_ours(bytes: &[u8], starts: &[&[u8]]) -> bool {
    starts
        .iter()
        .any(|s| bytes.starts_with(s) || s.starts_with(bytes))
}

/// Reads a JSON lines output (or journal): `done` gets each captioned record's `file`
/// (or `image_id`, as `key` says).
fn scan_jsonl(path: &Path, key: &Key, done: &mut HashSet<String>) -> Result<Scan> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| Error::file(path, e))?);
    let mut scan = Scan {
        keep: 0,
        errors: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut records = 0;
    let mut bad: Option<usize> = None;
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::file(path, e))?;
        if n == 0 {
            break;
        }
        if let Some(line) = bad {
            return Err(not_ours(path, line, "a captioner JSON record"));
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            // Cut short by a kill: drop it, if it can be ours.
            if records > 0 || starts_like_ours(&buf, &[br#"{"file":""#, br#"{"image_id":"#]) {
                break;
            }
            return Err(not_ours(path, line_no, "a captioner JSON record"));
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            scan.keep += n as u64;
            continue;
        }
        let rec = serde_json::from_str::<JsonLine>(&text).ok();
        let counted = match rec {
            Some(rec) if rec.caption.is_none() && rec.error.is_some() => {
                scan.errors.push(line_no);
                true
            }
            Some(rec) if rec.caption.is_some() => match (key, rec.image_id) {
                (Key::ImageId, Some(id)) => {
                    done.insert(id_key(&id));
                    true
                }
                (Key::File, _) if !rec.file.is_empty() => {
                    done.insert(rec.file);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !counted {
            // Unless it is the last line of an output of ours, the file is not ours.
            if records == 0 {
                return Err(not_ours(path, line_no, "a captioner JSON record"));
            }
            bad = Some(line_no);
            continue;
        }
        records += 1;
        scan.keep += n as u64;
    }
    Ok(scan)
}

/// Reads a CSV output: its header must be `file,caption`; `done` gets each row's file.
fn scan_csv(path: &Path, done: &mut HashSet<String>) -> Result<Scan> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| Error::file(path, e))?);
    let mut scan = Scan {
        keep: 0,
        errors: Vec::new(),
    };
    let header = output::csv_line(&CSV_HEADER);
    let mut bad: Option<usize> = None;
    let mut record_no = 0;
    while let Some(rec) = output::read_csv_record(&mut reader).map_err(|e| Error::file(path, e))? {
        if let Some(line) = bad {
            return Err(not_ours(path, line, "a file,caption row"));
        }
        record_no += 1;
        match rec.fields {
            Some(f) if record_no == 1 && f == CSV_HEADER => {}
            _ if record_no == 1 => {
                if !rec.complete && header.as_bytes().starts_with(&rec.bytes) {
                    break;
                }
                return Err(not_ours(path, 1, "the header file,caption"));
            }
            // After our header, a last record cut short is ours.
            _ if !rec.complete => break,
            Some(f) if f.len() == 2 => {
                done.insert(f.into_iter().next().expect("two fields"));
            }
            _ => {
                bad = Some(record_no);
                continue;
            }
        }
        scan.keep += rec.bytes.len() as u64;
    }
    Ok(scan)
}

/// Rewrites the first `keep` bytes of a JSON lines file without the lines `drop`
/// (numbered from 1), atomically.
fn rewrite_without(path: &Path, keep: u64, drop: &[usize]) -> Result<()> {
    let tmp = output::hidden_sibling(path, &format!("tmp-{}", std::process::id()));
    let copy = || -> Result<()> {
        let reader = BufReader::new(
            File::open(path)
                .map_err(|e| Error::file(path, e))?
                .take(keep),
        );
        let mut w = io::BufWriter::new(File::create(&tmp).map_err(|e| Error::file(&tmp, e))?);
        let mut drop = drop.iter().peekable();
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(|e| Error::file(path, e))?;
            if drop.peek() == Some(&&(i + 1)) {
                drop.next();
                continue;
            }
            w.write_all(&line)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| Error::file(&tmp, e))?;
        }
        let f = w.into_inner().map_err(|e| Error::file(&tmp, e.error()))?;
        f.sync_all().map_err(|e| Error::file(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::file(path, e))
    };
    copy().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Starts a json format journal from a finished COCO results file, so that a new run
/// adds to it.
fn seed_journal(out: &Path, journal: &Path) -> Result<()> {
    let file = File::open(out).map_err(|e| Error::file(out, e))?;
    let tmp = output::hidden_sibling(journal, &format!("tmp-{}", std::process::id()));
    let mut w = io::BufWriter::new(File::create(&tmp).map_err(|e| Error::file(&tmp, e))?);
    let mut failed = None;
    let parsed = output::for_each_coco_result(file, |CocoResult { image_id, caption }| {
        let line = JsonLine {
            image_id: Some(image_id),
            caption: Some(caption),
            ..JsonLine::default()
        };
        if failed.is_none() {
            failed = writeln!(w, "{}", line.to_line()).err();
        }
    });
    let finish = || -> Result<()> {
        parsed.map_err(|e| {
            Error::file(
                out,
                format!(
                    "is not a COCO results file ({e}); start it over with --overwrite, \
                     or write to another file"
                ),
            )
        })?;
        if let Some(e) = failed {
            return Err(Error::file(&tmp, e));
        }
        let f = w.into_inner().map_err(|e| Error::file(&tmp, e.error()))?;
        f.sync_all().map_err(|e| Error::file(&tmp, e))?;
        fs::rename(&tmp, journal).map_err(|e| Error::file(journal, e))
    };
    finish().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
