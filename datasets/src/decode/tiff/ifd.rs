//! The first image file directory, read as Pillow's `ImageFileDirectory_v2.load` reads
//! it: Pillow decides the mode, the strips and the orientation from its own reading of
//! the tags (before libtiff sees the file), so its tolerances are the ones to copy.
//! Entries of unknown type are skipped, the first of duplicate tags wins, a tag whose
//! out-of-line data would take the running total past the file's size is skipped, and
//! a directory cut short (or data running past the end of the file) keeps the entries
//! read before.

/// One number of a tag, as Python holds it: integer types give `int`, FLOAT, DOUBLE and
/// the rationals give values that compare equal to an `int` only when integral.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i128),
    Real(f64),
}

impl Num {
    /// The integer Python's `==` finds this equal to, if any.
    pub fn integral(self) -> Option<i128> {
        match self {
            Num::Int(v) => Some(v),
            Num::Real(f) if f.is_finite() && f.fract() == 0.0 => Some(f as i128),
            Num::Real(_) => None,
        }
    }

    /// The value when it is a Python `int` (what `isinstance(v, int)` accepts).
    pub fn int(self) -> Option<i128> {
        match self {
            Num::Int(v) => Some(v),
            Num::Real(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    Nums(Vec<Num>),
    /// BYTE and UNDEFINED: Python `bytes`, which equal no number.
    Bytes(Vec<u8>),
    /// ASCII: a Python `str`.
    Text,
}

#[derive(Debug)]
pub(super) struct Ifd {
    pub big_endian: bool,
    /// Where the directory starts (libtiff is pointed at it, as Pillow points it).
    pub offset: u32,
    entries: Vec<(u16, Value)>,
}

impl Ifd {
    pub fn get(&self, tag: u16) -> Option<&Value> {
        self.entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    pub fn contains(&self, tag: u16) -> bool {
        self.get(tag).is_some()
    }
}

/// Reads the header and the first directory; `Err` where Pillow's `_open` fails
/// before looking at any tag.
pub(super) fn first(data: &[u8]) -> Result<Ifd, String> {
    let big_endian = match data.get(..4) {
        Some(b"II*\0") => false,
        Some(b"MM\0*") => true,
        _ => return Err("not a TIFF header".into()),
    };
    let reader = Reader { data, big_endian };
    let offset = reader.u32(4).ok_or("the header is cut short")?;
    if offset == 0 {
        return Err("the file holds no image directory".into());
    }
    let mut ifd = Ifd {
        big_endian,
        offset,
        entries: Vec::new(),
    };
    let start = offset as usize;
    // A directory that cannot be read (or not to its end) keeps what was read.
    let Some(count) = reader.u16(start) else {
        return Ok(ifd);
    };
    let file_len = data.len() as u64;
    let mut out_of_line = 0u64;
    for i in 0..count as usize {
        let at = start + 2 + 12 * i;
        let Some(entry) = data.get(at..at + 12) else {
            break;
        };
        let tag = reader.u16(at).unwrap_or(0);
        if ifd.contains(tag) {
            continue;
        }
        let kind = reader.u16(at + 2).unwrap_or(0);
        let count = reader.u32(at + 4).unwrap_or(0) as u64;
        let Some(unit) = unit_size(kind) else {
            continue;
        };
        let size = count * unit;
        let bytes = if size > 4 {
            out_of_line += size;
            if out_of_line > file_len {
                continue;
            }
            let from = reader.u32(at + 8).unwrap_or(0) as u64;
            // Data running past the end stops Pillow's reading ("Truncated File Read").
            match data.get(from as usize..(from + size) as usize) {
                Some(b) => b,
                None => break,
            }
        } else {
            &entry[8..8 + size as usize]
        };
        if bytes.is_empty() {
            continue;
        }
        ifd.entries.push((tag, reader.value(kind, bytes)));
    }
    Ok(ifd)
}

/// Bytes per value of the TIFF field types Pillow reads; `None` for those it skips.
fn unit_size(kind: u16) -> Option<u64> {
    Some(match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 => 8,
        _ => return None,
    })
}

struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let mut b: [u8; N] = self.data.get(at..at.checked_add(N)?)?.try_into().ok()?;
        if !self.big_endian {
            b.reverse();
        }
        Some(b)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        self.bytes(at).map(u16::from_be_bytes)
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.bytes(at).map(u32::from_be_bytes)
    }

    /// The values of one entry, `bytes` being exactly its `count` values.
    fn value(&self, kind: u16, bytes: &[u8]) -> Value {
        let inner = Reader {
            data: bytes,
            big_endian: self.big_endian,
        };
        let unit = unit_size(kind).unwrap_or(1) as usize;
        let n = bytes.len() / unit;
        let nums = |f: &dyn Fn(usize) -> Option<Num>| -> Value {
            Value::Nums((0..n).filter_map(|i| f(i * unit)).collect())
        };
        let int = |v: i128| Some(Num::Int(v));
        match kind {
            1 | 7 => Value::Bytes(bytes.to_vec()),
            2 => Value::Text,
            3 => nums(&|at| int(inner.bytes::<2>(at).map(u16::from_be_bytes)? as i128)),
            8 => nums(&|at| int(inner.bytes::<2>(at).map(i16::from_be_bytes)? as i128)),
            4 | 13 => nums(&|at| int(inner.bytes::<4>(at).map(u32::from_be_bytes)? as i128)),
            9 => nums(&|at| int(inner.bytes::<4>(at).map(i32::from_be_bytes)? as i128)),
            6 => nums(&|at| int(*bytes.get(at)? as i8 as i128)),
            16 => nums(&|at| int(inner.bytes::<8>(at).map(u64::from_be_bytes)? as i128)),
            11 => nums(&|at| {
                Some(Num::Real(
                    inner.bytes::<4>(at).map(f32::from_be_bytes)? as f64
                ))
            }),
            12 => nums(&|at| Some(Num::Real(inner.bytes::<8>(at).map(f64::from_be_bytes)?))),
            5 => nums(&|at| {
                let (n, d) = (inner.u32(at)? as f64, inner.u32(at + 4)? as f64);
                Some(ratio(n, d))
            }),
            _ => nums(&|at| {
                let n = inner.bytes::<4>(at).map(i32::from_be_bytes)? as f64;
                let d = inner.bytes::<4>(at + 4).map(i32::from_be_bytes)? as f64;
                Some(ratio(n, d))
            }),
        }
    }
}

/// Pillow's `IFDRational`, which is no `int` even when integral; a zero denominator
/// makes NaN.
fn ratio(n: f64, d: f64) -> Num {
    Num::Real(if d == 0.0 { f64::NAN } else { n / d })
}
