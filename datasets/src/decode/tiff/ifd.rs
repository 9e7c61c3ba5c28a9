//! The first image file directory, read as Pillow's `ImageFileDirectory_v2.load` reads
//! it: Pillow decides the mode, the strips and the orientation from its own reading of
//! the tags (before libtiff sees the file), so its tolerances are the ones to copy.
//! Entries of unknown type are skipped, the first of duplicate tags wins, a tag whose
//! out-of-line data would take the running total past the file's size is skipped, and
//! a directory cut short (or data running past the end of the file) keeps the entries
//! read before. BigTIFF is read with its 8-byte counts and offsets, as Pillow reads it
//! (only in little-endian files: see `first`).

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
    pub offset: u64,
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

/// Where the numbers of a header and a directory sit: classic TIFF has 4-byte offsets,
/// 2-byte entry counts and 12-byte entries with 4 bytes of inline data; BigTIFF has
/// 8-byte offsets and counts and 20-byte entries with 8 bytes of inline data.
#[derive(Clone, Copy)]
struct Layout {
    big: bool,
}

impl Layout {
    /// The field an offset or a value count takes.
    fn word(self) -> usize {
        if self.big {
            8
        } else {
            4
        }
    }

    fn entry_count_size(self) -> usize {
        if self.big {
            8
        } else {
            2
        }
    }

    fn entry_size(self) -> usize {
        4 + 2 * self.word()
    }
}

/// Reads the header and the first directory; `Err` where Pillow's `_open` fails
/// before looking at any tag.
///
/// The byte order comes from the first two bytes of one of the magics Pillow accepts.
/// Pillow takes a file for BigTIFF when its third byte is 43, which only the
/// little-endian `II+\0` has: a big-endian `MM\0+` is read as classic TIFF, its
/// directory offset taken from bytes 4-8 (in a real BigTIFF, 0x0008_0000: normally past
/// the end, so no tags and a refusal). `MM*\0` and `II\0*`, the version bytes swapped,
/// are read as classic TIFF too (libtiff rejects them, so only uncompressed ones decode).
pub(super) fn first(data: &[u8]) -> Result<Ifd, String> {
    let (big_endian, big) = match data.get(..4) {
        Some(b"II*\0" | b"II\0*") => (false, false),
        Some(b"II+\0") => (false, true),
        Some(b"MM\0*" | b"MM*\0" | b"MM\0+") => (true, false),
        _ => return Err("not a TIFF header".into()),
    };
    let layout = Layout { big };
    let reader = Reader { data, big_endian };
    // The first directory's offset follows the magic (BigTIFF puts its offset size and
    // two reserved bytes in between, which Pillow does not look at).
    let offset = reader
        .word(if big { 8 } else { 4 }, layout)
        .ok_or("the header is cut short")?;
    if offset == 0 {
        return Err("the file holds no image directory".into());
    }
    // Python's file seek refuses what does not fit a signed 64-bit offset.
    if offset >= 1 << 63 {
        return Err(format!(
            "the image directory offset {offset} is out of range"
        ));
    }
    let mut ifd = Ifd {
        big_endian,
        offset,
        entries: Vec::new(),
    };
    // A directory that cannot be read (or not to its end) keeps what was read.
    let Ok(start) = usize::try_from(offset) else {
        return Ok(ifd);
    };
    let Some(count) = reader.count(start, layout) else {
        // No tags at all: Pillow refuses at open (missing dimensions). Said plainly for
        // the one header that gets here from a well-formed file.
        if data.starts_with(b"MM\0+") {
            let why = "a big-endian BigTIFF: Pillow 13 reads it as classic TIFF, finds no \
                       image directory at the offset in bytes 4-8, and refuses it";
            return Err(why.into());
        }
        return Ok(ifd);
    };
    // Pillow reads entries until the count or the file runs out, so a hostile count
    // (a BigTIFF may claim 2^64 - 1) costs no more than the entries the file holds.
    let first_entry = start.saturating_add(layout.entry_count_size());
    let room = data.len().saturating_sub(first_entry) / layout.entry_size();
    let count = usize::try_from(count).map_or(room, |c| c.min(room));
    let file_len = data.len() as u128;
    let inline = layout.word();
    let mut out_of_line = 0u128;
    // Which tags were kept: a directory may repeat tags for as long as the file lasts,
    // so looking each one up among those kept would be quadratic.
    let mut kept = vec![0u64; (1 << 16) / 64];
    for i in 0..count {
        let at = first_entry + layout.entry_size() * i;
        let Some(entry) = data.get(at..at + layout.entry_size()) else {
            break;
        };
        let tag = reader.u16(at).unwrap_or(0);
        let (word, bit) = (tag as usize / 64, 1u64 << (tag % 64));
        if kept[word] & bit != 0 {
            continue;
        }
        let kind = reader.u16(at + 2).unwrap_or(0);
        let Some(unit) = unit_size(kind) else {
            continue;
        };
        let count = reader.word(at + 4, layout).unwrap_or(0);
        let field_at = 4 + inline;
        // Counts and sizes as Python's unbounded integers: no overflow can wrap.
        let size = count as u128 * unit as u128;
        let bytes = if size > inline as u128 {
            let from = reader.word(at + field_at, layout).unwrap_or(0);
            // Past what a seek takes, Pillow warns and skips the tag before counting it.
            if from >= 1 << 63 {
                continue;
            }
            out_of_line += size;
            if out_of_line > file_len {
                continue;
            }
            // Data running past the end stops Pillow's reading ("Truncated File Read").
            let range = usize::try_from(from)
                .ok()
                .and_then(|from| Some(from..from.checked_add(usize::try_from(size).ok()?)?));
            match range.and_then(|r| data.get(r)) {
                Some(b) => b,
                None => break,
            }
        } else {
            // `size` is at most `inline` here.
            &entry[field_at..field_at + size as usize]
        };
        if bytes.is_empty() {
            continue;
        }
        kept[word] |= bit;
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

    fn u64(&self, at: usize) -> Option<u64> {
        self.bytes(at).map(u64::from_be_bytes)
    }

    /// An offset or a value count: 4 bytes in classic TIFF, 8 in BigTIFF.
    fn word(&self, at: usize, layout: Layout) -> Option<u64> {
        if layout.big {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }

    /// A directory's entry count: 2 bytes in classic TIFF, 8 in BigTIFF.
    fn count(&self, at: usize, layout: Layout) -> Option<u64> {
        if layout.big {
            self.u64(at)
        } else {
            self.u16(at).map(u64::from)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian BigTIFF whose directory at 16 claims `count` entries and holds
    /// `entries` (tag, type, value count, 8-byte field), then a next-directory offset.
    fn bigtiff(count: u64, entries: &[(u16, u16, u64, u64)]) -> Vec<u8> {
        let mut data = b"II+\0\x08\0\0\0".to_vec();
        data.extend(16u64.to_le_bytes());
        data.extend(count.to_le_bytes());
        for &(tag, kind, n, field) in entries {
            data.extend(tag.to_le_bytes());
            data.extend(kind.to_le_bytes());
            data.extend(n.to_le_bytes());
            data.extend(field.to_le_bytes());
        }
        data.extend(0u64.to_le_bytes());
        data
    }

    fn nums(ifd: &Ifd, tag: u16) -> Option<Vec<i128>> {
        match ifd.get(tag)? {
            Value::Nums(v) => v.iter().map(|n| n.int()).collect(),
            _ => None,
        }
    }

    #[test]
    fn bigtiff_entries_inline_and_out_of_line() {
        let mut data = bigtiff(
            4,
            &[
                (256, 16, 1, 45),                   // LONG8 inline
                (258, 3, 4, 0x0008_0008_0008_0008), // four SHORTs fill the 8 bytes
                (273, 16, 2, 16 + 8 + 4 * 20 + 8),  // two LONG8s, out of line
                (256, 3, 1, 99),                    // a repeat: the first wins
            ],
        );
        data.extend(1000u64.to_le_bytes());
        data.extend((1u64 << 40).to_le_bytes());
        let ifd = first(&data).unwrap();
        assert!(!ifd.big_endian);
        assert_eq!(ifd.offset, 16);
        assert_eq!(nums(&ifd, 256), Some(vec![45]));
        assert_eq!(nums(&ifd, 258), Some(vec![8; 4]));
        assert_eq!(nums(&ifd, 273), Some(vec![1000, 1 << 40]));
    }

    /// Counts of entries and of values as large as the fields hold cost nothing: the
    /// entries are read while the file lasts, and oversized values are skipped, as
    /// Pillow 13 skips them (checked against its `ImageFileDirectory_v2.load`).
    #[test]
    fn hostile_bigtiff_counts_are_harmless() {
        for count in [1 << 60, u64::MAX] {
            let data = bigtiff(
                count,
                &[
                    (256, 4, 1, 45),
                    (257, 16, 1 << 60, 0),  // 2^63 bytes: more than the file
                    (258, 16, u64::MAX, 0), // its size does not even fit 64 bits
                    (259, 3, 5, u64::MAX),  // an offset no seek takes
                    (262, 3, 5, 1 << 40),   // skipped: the running total is past the file
                    (263, 3, 1, 1),
                ],
            );
            let ifd = first(&data).unwrap();
            assert_eq!(nums(&ifd, 256), Some(vec![45]));
            assert_eq!(nums(&ifd, 263), Some(vec![1]));
            for tag in [257, 258, 259, 262] {
                assert!(!ifd.contains(tag), "tag {tag}");
            }
            // Data past the end of the file stops the reading.
            let data = bigtiff(
                count,
                &[(256, 4, 1, 45), (262, 3, 5, 1 << 40), (263, 3, 1, 1)],
            );
            let ifd = first(&data).unwrap();
            assert_eq!(nums(&ifd, 256), Some(vec![45]));
            assert!(!ifd.contains(263));
        }
        assert!(first(b"II+\0\x08\0\0\0\0\0\0\0\0\0\0\x80").is_err());
        assert!(first(b"II+\0\x08\0\0\0\x10\0\0\0").is_err());
    }

    /// Only the third byte tells Pillow a file is BigTIFF: `MM\0+` is read as classic
    /// TIFF, and the swapped-version magics as classic TIFF of their byte order.
    #[test]
    fn header_variants_as_pillow_reads_them() {
        // Offset 8, one entry (ImageWidth, SHORT, 1 value: 45), next offset 0; written
        // little-endian, each field reversed for big-endian files.
        let classic = |magic: &[u8; 4], big_endian: bool| {
            let fields: [&[u8]; 8] = [
                &[8, 0, 0, 0],
                &[1, 0],
                &[0, 1],
                &[3, 0],
                &[1, 0, 0, 0],
                &[45, 0],
                &[0, 0],
                &[0; 4],
            ];
            let mut data = magic.to_vec();
            for field in fields {
                match big_endian {
                    true => data.extend(field.iter().rev()),
                    false => data.extend(field),
                }
            }
            data
        };
        for (magic, big_endian) in [
            (b"II*\0", false),
            (b"II\0*", false),
            (b"MM\0*", true),
            (b"MM*\0", true),
            (b"MM\0+", true),
        ] {
            let ifd = first(&classic(magic, big_endian)).unwrap();
            assert_eq!(ifd.big_endian, big_endian);
            assert_eq!(nums(&ifd, 256), Some(vec![45]), "{magic:?}");
        }
        // A real big-endian BigTIFF: bytes 4-8 (offset size 8, reserved 0) put the
        // directory at 0x80000, past the end: no tags.
        let mut be = b"MM\0+\0\x08\0\0".to_vec();
        be.extend(16u64.to_be_bytes());
        be.extend(1u64.to_be_bytes());
        be.extend([1, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 45, 0, 0, 0, 0, 0, 0]);
        assert!(first(&be).unwrap_err().contains("big-endian BigTIFF"));
        be.resize(0x8_0000 + 2, 0);
        let ifd = first(&be).unwrap();
        assert_eq!(ifd.offset, 0x8_0000);
        assert!(!ifd.contains(256));
        assert!(first(b"MM+\0\0\0\0\x08").is_err());
    }
}
