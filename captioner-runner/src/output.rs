//! Where captions go, and reading them back: JSON lines, COCO results JSON, CSV, and
//! tag files (sidecars) beside the images.
//!
//! Every writer takes the records of one batch at a time and makes them durable before
//! it returns (one `write` of the whole batch, then a flush), so a killed run loses at
//! most the batch in flight. Opening an existing output for a resumed run is
//! [`crate::resume`]'s business; the parsers it uses are here.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use captioner::WordMaps;
use captioner::{Caption, Error, Result};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per image and line.
    Jsonl,
    /// COCO results: `[{"image_id", "caption"}]`, written when the run ends.
    Json,
    /// `file,caption` rows, RFC 4180 quoting.
    Csv,
    /// A tag file beside each image.
    Txt,
}

impl Format {
    /// The format a file name asks for: `.json` and `.csv` by their extension, anything
    /// else JSON lines.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Self::Json,
            Some(e) if e.eq_ignore_ascii_case("csv") => Self::Csv,
            _ => Self::Jsonl,
        }
    }
}

/// One caption as the outputs write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub caption: String,
    pub score: f32,
    pub tokens: Vec<u32>,
    /// Per-word attention maps, when the run keeps them (not part of any output file).
    #[serde(skip)]
    pub attention: Option<WordMaps>,
}

impl From<Caption> for Text {
    fn from(c: Caption) -> Self {
        Self {
            caption: c.text,
            score: c.score,
            tokens: c.tokens,
            attention: None,
        }
    }
}

/// What became of one image.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where the image is (sidecars go beside it).
    pub path: PathBuf,
    /// Its path relative to the folder argument it was found in.
    pub relative: PathBuf,
    /// The path as outputs write it, and as resuming matches it.
    pub file: String,
    /// Its COCO image id, for `--format json` or with an annotation file.
    pub image_id: Option<Value>,
    /// Its captions, best first, or why there are none (naming the file).
    pub result: std::result::Result<Vec<Text>, String>,
}

/// A JSON line: `file`, `caption`, `score`, `tokens` (+ `candidates` for n-best lists),
/// or `file`, `error`; `image_id` when known. Also the json format's journal line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonLine {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Text>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl JsonLine {
    pub fn new(record: &Record) -> Self {
        let mut line = Self {
            file: record.file.clone(),
            image_id: record.image_id.clone(),
            ..Self::default()
        };
        match &record.result {
            Ok(texts) => {
                if let Some(best) = texts.first() {
                    line.caption = Some(best.caption.clone());
                    line.score = Some(best.score);
                    line.tokens = Some(best.tokens.clone());
                }
                if texts.len() > 1 {
                    line.candidates = Some(texts.clone());
                }
            }
            Err(e) => line.error = Some(e.clone()),
        }
        line
    }

    /// One line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("strings, numbers and lists serialise")
    }
}

/// One entry of a COCO results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoResult {
    pub image_id: Value,
    pub caption: String,
}

/// Takes each batch's records; [`Sink::finish`] once at the end of the run.
pub trait Sink {
    fn write(&mut self, records: &[Record]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Several sinks fed the same records, in order.
pub struct Tee(pub Vec<Box<dyn Sink>>);

impl Sink for Tee {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| s.write(records))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.0.into_iter().try_for_each(|s| s.finish())
    }
}

/// Streams of lines: JSON lines, CSV rows, or a COCO results array written as it goes
/// (for standard output).
pub struct LineSink<W: Write> {
    out: W,
    name: String,
    kind: LineKind,
    /// Entries written so far (the array's separators).
    written: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Jsonl,
    Csv,
    JsonArray,
}

/// The CSV header.
pub const CSV_HEADER: [&str; 2] = ["file", "caption"];

impl<W: Write> LineSink<W> {
    /// `name` names the destination in error messages. A new CSV output should get
    /// [`LineSink::header`] first.
    pub fn new(out: W, name: impl Into<String>, kind: LineKind) -> Self {
        Self {
            out,
            name: name.into(),
            kind,
            written: 0,
        }
    }

    pub fn header(&mut self) -> Result<()> {
        let line = csv_line(&CSV_HEADER);
        self.put(line.as_bytes())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let name = &self.name;
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::file(name, e))
    }

    /// Writes what ends the output (a COCO array's closing bracket) and gives the writer
    /// back.
    pub fn close(mut self) -> Result<W> {
        if self.kind == LineKind::JsonArray {
            let end = if self.written == 0 { "[]\n" } else { "\n]\n" };
            self.put(end.as_bytes())?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Sink for LineSink<W> {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        let mut text = String::new();
        for record in records {
            match self.kind {
                LineKind::Jsonl => {
                    text.push_str(&JsonLine::new(record).to_line());
                    text.push('\n');
                }
                LineKind::Csv => {
                    if let Ok(texts) = &record.result {
                        let caption = texts.first().map_or("", |t| t.caption.as_str());
                        text.push_str(&csv_line(&[&record.file, caption]));
                    }
                }
                LineKind::JsonArray => {
                    if let (Ok(texts), Some(id)) = (&record.result, &record.image_id) {
                        text.push_str(if self.written == 0 { "[\n" } else { ",\n" });
                        let entry = CocoResult {
                            image_id: id.clone(),
                            caption: texts.first().map(|t| t.caption.clone()).unwrap_or_default(),
                        };
                        text.push_str(&serde_json::to_string(&entry).expect("serialises"));
                        self.written += 1;
                    }
                }
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        self.put(text.as_bytes())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.close().map(drop)
    }
}

// ---------------------------------------------------------------------------------------
// JSON lines

/// Reads a JSON lines file: every line a [`JsonLine`].
pub fn read_jsonl(path: &Path) -> Result<Vec<JsonLine>> {
    let reader = BufReader::new(File::open(path).map_err(|e| Error::file(path, e))?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::file(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::file(path, format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// CSV (RFC 4180)

/// One CSV record with its CRLF line break, fields quoted where they hold a comma, a
/// quote, a CR or a LF (the csv crate's writer).
pub fn csv_line(fields: &[&str]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(fields)
        .expect("writing to memory does not fail");
    let bytes = w.into_inner().expect("writing to memory does not fail");
    String::from_utf8(bytes).expect("the fields are UTF-8")
}

/// One record read by [`read_csv_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    /// The fields; `None` when the bytes are not a well-formed record.
    pub fields: Option<Vec<String>>,
    /// The record's bytes, line break included.
    pub bytes: Vec<u8>,
    /// Whether it ended with a line break outside quotes (a record cut short by a
    /// killed writer does not).
    pub complete: bool,
}

/// Reads the next record (which may span lines inside quotes); `None` at the end. The
/// csv crate's reader is not used here: it accepts malformed quoting (which tells a
/// file that is not ours) and does not say whether the last record lost its line break
/// (which tells a record cut short by a killed run).
pub fn read_csv_record(reader: &mut impl BufRead) -> io::Result<Option<CsvRecord>> {
    let mut buf = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut buf)?;
        let quotes = buf.iter().filter(|&&b| b == b'"').count();
        if n == 0 || (buf.last() == Some(&b'\n') && quotes % 2 == 0) {
            break;
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let complete =
        buf.last() == Some(&b'\n') && buf.iter().filter(|&&b| b == b'"').count() % 2 == 0;
    let fields = if complete {
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        std::str::from_utf8(body).ok().and_then(parse_csv_fields)
    } else {
        None
    };
    Ok(Some(CsvRecord {
        fields,
        bytes: buf,
        complete,
    }))
}

/// The fields of one record without its line break; `None` if it is malformed (a quote
/// inside an unquoted field, or text after a closing quote).
fn parse_csv_fields(body: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Some(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return None,
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// Reads a whole CSV text: its records' fields, the header included (the csv crate's
/// reader; resuming reads records with [`read_csv_record`], which is stricter).
pub fn read_csv(reader: impl io::Read) -> io::Result<Vec<Vec<String>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    reader
        .records()
        .map(|r| {
            r.map(|r| r.iter().map(str::to_string).collect())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// COCO results JSON

/// Calls `each` on every entry of a COCO results array, streaming (the array is never
/// held in memory whole).
pub fn for_each_coco_result(
    reader: impl io::Read,
    mut each: impl FnMut(CocoResult),
) -> serde_json::Result<()> {
    struct Each<'a, F>(&'a mut F);
    impl<'de, F: FnMut(CocoResult)> Visitor<'de> for Each<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of {\"image_id\", \"caption\"} objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            while let Some(entry) = seq.next_element::<CocoResult>()? {
                (self.0)(entry);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(reader));
    de.deserialize_seq(Each(&mut each))?;
    de.end()
}

/// Reads a COCO results file.
pub fn read_coco_results(path: &Path) -> Result<Vec<CocoResult>> {
    let file = File::open(path).map_err(|e| Error::file(path, e))?;
    let mut out = Vec::new();
    for_each_coco_result(file, |r| out.push(r)).map_err(|e| Error::file(path, e))?;
    Ok(out)
}

/// Writes a COCO results file from a json format journal (JSON lines; the error records
/// left out), atomically: a temporary file beside `out`, synced, then renamed over it.
pub fn write_coco_results_from_journal(journal: &Path, out: &Path) -> Result<()> {
    let tmp = hidden_sibling(out, &format!("tmp-{}", std::process::id()));
    let write = || -> Result<()> {
        let mut w = io::BufWriter::new(File::create(&tmp).map_err(|e| Error::file(&tmp, e))?);
        let reader = BufReader::new(File::open(journal).map_err(|e| Error::file(journal, e))?);
        let mut n = 0usize;
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Error::file(journal, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: JsonLine = serde_json::from_str(&line)
                .map_err(|e| Error::file(journal, format!("line {}: {e}", i + 1)))?;
            let (Some(image_id), Some(caption)) = (rec.image_id, rec.caption) else {
                continue;
            };
            let entry =
                serde_json::to_string(&CocoResult { image_id, caption }).expect("serialises");
            let sep = if n == 0 { "[\n" } else { ",\n" };
            write!(w, "{sep}{entry}").map_err(|e| Error::file(&tmp, e))?;
            n += 1;
        }
        w.write_all(if n == 0 { b"[]\n" } else { b"\n]\n" })
            .map_err(|e| Error::file(&tmp, e))?;
        let f = w.into_inner().map_err(|e| Error::file(&tmp, e.error()))?;
        f.sync_all().map_err(|e| Error::file(&tmp, e))?;
        fs::rename(&tmp, out).map_err(|e| Error::file(out, e))
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// `.NAME.SUFFIX` beside `path`: hidden, so folder walks leave it out.
pub fn hidden_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// The json format's journal for `out`: JSON lines of this run's records, beside it.
pub fn journal_path(out: &Path) -> PathBuf {
    hidden_sibling(out, "partial.jsonl")
}

/// Writes the journal while the run goes, the COCO results file at its end.
pub struct JsonFileSink {
    pub journal: LineSink<File>,
    pub journal_path: PathBuf,
    pub out: PathBuf,
}

impl Sink for JsonFileSink {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        self.journal.write(records)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        drop(self.journal);
        write_coco_results_from_journal(&self.journal_path, &self.out)?;
        fs::remove_file(&self.journal_path).map_err(|e| Error::file(&self.journal_path, e))
    }
}

// ---------------------------------------------------------------------------------------
// Tag files beside the images

/// What to do with a tag file that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMode {
    /// Leave it, and do not caption the image.
    Keep,
    /// Replace it.
    Overwrite,
    /// Add the caption at its end: `old tags, caption`.
    Append,
    /// Add the caption at its start: `caption, old tags`.
    Prepend,
}

/// `image.EXT` beside `image.jpg` (the extension given with or without its dot).
pub fn sidecar_path(image: &Path, ext: &str) -> PathBuf {
    image.with_extension(ext.trim_start_matches('.'))
}

/// The tag line for a caption and an existing tag file's text (comma-separated tags, as
/// tag files for diffusion training are); `None` when the caption is one of its tags
/// already, so appending twice changes nothing.
pub fn merge_tags(existing: &str, caption: &str, mode: TagMode) -> Option<String> {
    let existing = existing.trim();
    let caption = caption.trim();
    if existing.is_empty() || matches!(mode, TagMode::Keep | TagMode::Overwrite) {
        return Some(caption.to_string());
    }
    if existing.split(',').any(|t| t.trim() == caption) {
        return None;
    }
    Some(match mode {
        TagMode::Prepend => format!("{caption}, {existing}"),
        _ => format!("{existing}, {caption}"),
    })
}

/// Writes each caption to a tag file beside its image, atomically.
pub struct SidecarSink {
    pub ext: String,
    pub mode: TagMode,
}

impl Sink for SidecarSink {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        for record in records {
            let Ok(texts) = &record.result else { continue };
            let caption = texts.first().map_or("", |t| t.caption.as_str());
            let path = sidecar_path(&record.path, &self.ext);
            let existing = match self.mode {
                TagMode::Append | TagMode::Prepend => match fs::read_to_string(&path) {
                    Ok(s) => s,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(Error::file(&path, e)),
                },
                TagMode::Keep | TagMode::Overwrite => String::new(),
            };
            if let Some(line) = merge_tags(&existing, caption, self.mode) {
                captioner::checkpoint::write_atomic(&path, format!("{line}\n").as_bytes())?;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
