//! Which input shards a worker owns, as the tools around WebDataset name and split them:
//! brace patterns (`data/{00000..01023}.tar`, expanded as Python's `braceexpand`
//! expands them for webdataset), `@list.txt` files of paths, and directories of shards;
//! then shard `j` of the sorted list belongs to worker `I` of `N` when `j mod N = I`,
//! with `I` and `N` taken from SLURM's or torchrun's variables by default.
//!
//! Ownership follows the shard, not the worker, so a rerun with another `N` still finds
//! each shard's own output and marker.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("pattern {pattern:?}: {why}")]
    Pattern { pattern: String, why: String },
    #[error("{path}: {why}")]
    List { path: String, why: String },
    #[error("{0}")]
    Slot(String),
}

/// Expands a brace pattern: `{a,b}` alternatives (nested ones too), `{3..12}` and
/// `{003..012}` integer ranges (zero-padded to the wider bound when either bound has a
/// leading zero), `{1..9..2}` ranges with a step, `{a..e}` letter ranges; a range may
/// run downwards. A backslash keeps the next character as it is; braces without a comma
/// or a range (`{}`, `{x}`) stay as they are, as `braceexpand` leaves them.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>, ShardError> {
    let err = |why: &str| ShardError::Pattern {
        pattern: pattern.into(),
        why: why.into(),
    };
    let chars: Vec<char> = pattern.chars().collect();
    let Some((open, close)) = first_group(&chars).map_err(|w| err(&w))? else {
        return Ok(vec![unescape(&chars)]);
    };
    let (head, body, tail) = (&chars[..open], &chars[open + 1..close], &chars[close + 1..]);
    let items = match range(body).map_err(|w| err(&w))? {
        Some(items) => items,
        None => {
            let parts = split_top_level(body);
            if parts.len() < 2 {
                // Not a group: keep the braces and expand what follows them.
                let literal: String = chars[..=close].iter().collect();
                let rest: String = tail.iter().collect();
                return Ok(expand_braces(&rest)?
                    .into_iter()
                    .map(|r| format!("{}{r}", unescape_str(&literal)))
                    .collect());
            }
            let mut items = Vec::new();
            for part in parts {
                items.extend(expand_braces(&part.iter().collect::<String>())?);
            }
            items
        }
    };
    let head = unescape(head);
    let tails = expand_braces(&tail.iter().collect::<String>())?;
    let mut out = Vec::with_capacity(items.len() * tails.len());
    for item in &items {
        for t in &tails {
            out.push(format!("{head}{item}{t}"));
        }
    }
    Ok(out)
}

/// The first top-level `{`…`}` (outside escapes), as (open, close) indices.
fn first_group(chars: &[char]) -> Result<Option<(usize, usize)>, String> {
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '{' => {
                let mut depth = 0;
                let mut j = i;
                while j < chars.len() {
                    match chars[j] {
                        '\\' => j += 1,
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(Some((i, j)));
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                return Err(format!("the brace at character {} is never closed", i + 1));
            }
            _ => {}
        }
        i += 1;
    }
    Ok(None)
}

/// `body` split at its commas outside nested braces and escapes.
fn split_top_level(body: &[char]) -> Vec<&[char]> {
    let (mut parts, mut start, mut depth, mut i) = (Vec::new(), 0, 0, 0);
    while i < body.len() {
        match body[i] {
            '\\' => i += 1,
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&body[start..]);
    parts
}

/// The items of a range body `a..b` or `a..b..step`, or `None` when it is not one.
fn range(body: &[char]) -> Result<Option<Vec<String>>, String> {
    let body: String = body.iter().collect();
    let parts: Vec<&str> = body.split("..").collect();
    if !(2..=3).contains(&parts.len()) {
        return Ok(None);
    }
    let step = match parts.get(2) {
        Some(s) => match s.parse::<i64>() {
            Ok(0) => return Err("a range's step must not be 0".into()),
            Ok(s) => s.unsigned_abs(),
            Err(_) => return Ok(None),
        },
        None => 1,
    };
    let (left, right) = (parts[0], parts[1]);
    if let (Ok(a), Ok(b)) = (left.parse::<i64>(), right.parse::<i64>()) {
        let padded = [left, right]
            .iter()
            .any(|s| *s != "0" && *s != "-0" && (s.starts_with('0') || s.starts_with("-0")));
        let width = if padded {
            left.len().max(right.len())
        } else {
            0
        };
        let values = stepped(a, b, step);
        if values.len() > 10_000_000 {
            return Err(format!("{{{body}}} has more than 10 million items"));
        }
        return Ok(Some(values.map(|v| format!("{v:0width$}")).collect()));
    }
    let one = |s: &str| {
        let mut c = s.chars();
        match (c.next(), c.next()) {
            (Some(ch), None) if ch.is_ascii_alphabetic() => Some(ch as i64),
            _ => None,
        }
    };
    if let (Some(a), Some(b)) = (one(left), one(right)) {
        return Ok(Some(
            stepped(a, b, step)
                .map(|v| char::from(v as u8).to_string())
                .collect(),
        ));
    }
    Ok(None)
}

/// `a` to `b` inclusive by `step`, upwards or downwards.
fn stepped(a: i64, b: i64, step: u64) -> impl ExactSizeIterator<Item = i64> {
    let n = (a.abs_diff(b) / step) as usize + 1;
    let sign = if b >= a { 1 } else { -1 };
    (0..n).map(move |i| a + sign * (i as i64) * step as i64)
}

fn unescape(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut it = chars.iter();
    while let Some(&c) = it.next() {
        match c {
            '\\' => out.extend(it.next()),
            c => out.push(c),
        }
    }
    out
}

fn unescape_str(s: &str) -> String {
    unescape(&s.chars().collect::<Vec<_>>())
}

/// The shards that `inputs` name, sorted and without repeats: each input is `-`
/// (standard input, kept as it is), a brace pattern, an `@FILE` listing one path or
/// pattern a line (blank lines and `#` comments skipped; relative paths are taken from
/// the list's folder; `@-` reads the list from standard input, relative to the working
/// folder), a directory (its files ending in one of `extensions`, not descending), or a
/// file.
pub fn list_shards(inputs: &[String], extensions: &[&str]) -> Result<Vec<PathBuf>, ShardError> {
    let mut shards = Vec::new();
    for input in inputs {
        if input == "-" {
            shards.push(PathBuf::from("-"));
        } else if let Some(list) = input.strip_prefix('@') {
            // `@-`: the list on standard input (Spark's `RDD.pipe` writes it there).
            let read = if list == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(list)
            };
            let text = read.map_err(|e| ShardError::List {
                path: list.into(),
                why: e.to_string(),
            })?;
            let folder = match list {
                "-" => Path::new(""),
                _ => Path::new(list).parent().unwrap_or(Path::new("")),
            };
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                for p in expand_braces(line)? {
                    shards.push(folder.join(p));
                }
            }
        } else if Path::new(input).is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| ShardError::List {
                path: input.clone(),
                why: e.to_string(),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if path.is_file() && extensions.iter().any(|x| x.eq_ignore_ascii_case(ext)) {
                    shards.push(path);
                }
            }
        } else {
            shards.extend(expand_braces(input)?.into_iter().map(PathBuf::from));
        }
    }
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Worker `index` of `count`: it owns shard `j` of the sorted list when
/// `j mod count = index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSlot {
    pub index: usize,
    pub count: usize,
}

impl WorkerSlot {
    /// `I/N`, as `--shard` takes it.
    pub fn parse(s: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Slot(format!("--shard {s:?}: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let slot = Self {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        };
        if slot.index >= slot.count {
            return Err(bad());
        }
        Ok(slot)
    }

    /// From the environment a scheduler gives each worker, read through `var`: a SLURM
    /// job array (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, of
    /// `SLURM_ARRAY_TASK_COUNT`), else SLURM's tasks (`SLURM_PROCID` of `SLURM_NTASKS`),
    /// else torchrun's (`RANK` of `WORLD_SIZE`); else the only worker, 0 of 1.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let num = |name: &str| -> Result<Option<usize>, ShardError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    ShardError::Slot(format!("{name}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let pairs = [
            ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
            ("SLURM_PROCID", "SLURM_NTASKS"),
            ("RANK", "WORLD_SIZE"),
        ];
        for (index, count) in pairs {
            let (Some(i), Some(n)) = (num(index)?, num(count)?) else {
                continue;
            };
            // Array task ids start at SLURM_ARRAY_TASK_MIN (--array=1-8 counts from 1).
            let first = if index == "SLURM_ARRAY_TASK_ID" {
                num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0)
            } else {
                0
            };
            let slot = Self {
                index: i.checked_sub(first).ok_or_else(|| {
                    ShardError::Slot(format!("{index}={i} is below SLURM_ARRAY_TASK_MIN={first}"))
                })?,
                count: n,
            };
            if slot.index >= slot.count {
                return Err(ShardError::Slot(format!(
                    "{index} gives worker {} but {count} is {n}; an array with gaps or a \
                     step needs --shard I/N",
                    slot.index
                )));
            }
            return Ok(slot);
        }
        Ok(Self { index: 0, count: 1 })
    }

    pub fn owns(&self, shard: usize) -> bool {
        shard % self.count == self.index
    }

    /// The shards of the sorted list `shards` this worker owns.
    pub fn select<T>(&self, shards: Vec<T>) -> Vec<T> {
        shards
            .into_iter()
            .enumerate()
            .filter(|(j, _)| self.owns(*j))
            .map(|(_, s)| s)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> Vec<String> {
        expand_braces(p).unwrap()
    }

    #[test]
    fn braces_expand_as_braceexpand_does() {
        assert_eq!(expand("a{1..3}b"), ["a1b", "a2b", "a3b"]);
        assert_eq!(
            expand("s-{008..011}.tar"),
            ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
        );
        assert_eq!(expand("{9..11}"), ["9", "10", "11"]);
        assert_eq!(expand("{3..1}"), ["3", "2", "1"]);
        assert_eq!(expand("{1..9..4}"), ["1", "5", "9"]);
        assert_eq!(expand("{0..2}"), ["0", "1", "2"]);
        assert_eq!(expand("{-1..1}"), ["-1", "0", "1"]);
        assert_eq!(expand("{a..c}"), ["a", "b", "c"]);
        assert_eq!(expand("{x,y{1,2}}z"), ["xz", "y1z", "y2z"]);
        assert_eq!(
            expand("d/{a,b}/{0..1}.tar"),
            ["d/a/0.tar", "d/a/1.tar", "d/b/0.tar", "d/b/1.tar"]
        );
        assert_eq!(expand("plain.tar"), ["plain.tar"]);
        assert_eq!(expand("{}x{y}"), ["{}x{y}"]);
        assert_eq!(expand(r"a\{1,2\}"), ["a{1,2}"]);
        assert!(expand_braces("a{1,2").is_err());
        assert!(expand_braces("{1..5..0}").is_err());
    }

    #[test]
    fn lists_sort_and_join_every_kind_of_input() {
        let dir = std::env::temp_dir().join(format!("captioner-shards-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        for f in ["d/b.tar", "d/a.TAR", "d/notes.txt"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let list = dir.join("list.txt");
        std::fs::write(&list, "# shards\nx-{1..2}.tar\n\n/abs/y.tar\n").unwrap();
        let inputs = [
            dir.join("d").display().to_string(),
            format!("@{}", list.display()),
            "/abs/y.tar".into(),
            "-".into(),
        ];
        let got = list_shards(&inputs, &["tar"]).unwrap();
        let want: Vec<PathBuf> = vec![
            "-".into(),
            "/abs/y.tar".into(),
            dir.join("d/a.TAR"),
            dir.join("d/b.tar"),
            dir.join("x-1.tar"),
            dir.join("x-2.tar"),
        ];
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
        let missing = list_shards(&["@/no/such/list.txt".into()], &["tar"]).unwrap_err();
        assert!(matches!(missing, ShardError::List { .. }), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_split_is_disjoint_and_covers_all_shards() {
        for shards in [0, 1, 7, 64, 101] {
            for count in 1..=12 {
                let mut seen = vec![0; shards];
                for index in 0..count {
                    let slot = WorkerSlot { index, count };
                    for j in slot.select((0..shards).collect()) {
                        seen[j] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{shards} shards over {count}");
            }
        }
        assert_eq!(
            WorkerSlot::parse("2/5").unwrap(),
            WorkerSlot { index: 2, count: 5 }
        );
        for bad in ["5/5", "1", "a/2", "1/0"] {
            assert!(WorkerSlot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slots_come_from_slurm_then_torchrun() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        let slot = |i, n| WorkerSlot { index: i, count: n };
        assert_eq!(WorkerSlot::from_env(env(&[])).unwrap(), slot(0, 1));
        let array: [(&str, &str); 7] = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("RANK", "5"),
            ("WORLD_SIZE", "6"),
        ];
        assert_eq!(WorkerSlot::from_env(env(&array)).unwrap(), slot(2, 8));
        assert_eq!(WorkerSlot::from_env(env(&array[3..])).unwrap(), slot(0, 1));
        assert_eq!(WorkerSlot::from_env(env(&array[5..])).unwrap(), slot(5, 6));
        let gaps = [
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert!(WorkerSlot::from_env(env(&gaps)).is_err());
        assert!(WorkerSlot::from_env(env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
    }
}
