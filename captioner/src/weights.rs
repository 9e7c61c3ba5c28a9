//! Reads a checkpoint's safetensors files one tensor at a time, with plain file reads.
//!
//! Memory-mapping the files (candle's usual loader) keeps every page read in the
//! process's resident memory until the map goes, beside the f32 copies the model holds:
//! loading BLIP-base that way peaks near twice its f32 size, whatever precision the
//! layers are then packed in. Read here, a tensor costs its own bytes only while it is
//! converted, so a model packed layer by layer as it is read never holds more than one
//! layer in f32.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use safetensors::tensor::TensorView;

use crate::{Error, Result};

/// A larger header than this is a corrupt or foreign file, not a checkpoint.
const MAX_HEADER: u64 = 100 << 20;

struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// From the start of the file.
    offset: u64,
    len: usize,
}

/// The tensors of one or more safetensors files, by name, read on demand; a
/// [`candle_nn::VarBuilder`] backend.
pub struct WeightFiles {
    files: Vec<(PathBuf, Mutex<File>)>,
    entries: HashMap<String, Entry>,
}

impl WeightFiles {
    /// Reads the headers of `paths` (the tensors are read when asked for).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let mut file = File::open(path).map_err(|e| Error::file(path, e))?;
            for (name, entry) in header(path, &mut file, i)? {
                entries.insert(name, entry);
            }
            files.push((path.clone(), Mutex::new(file)));
        }
        Ok(Self { files, entries })
    }

    fn read(&self, name: &str) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")).bt())?;
        let (path, file) = &self.files[entry.file];
        let failed = |e: &dyn std::fmt::Display| {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            candle_core::Error::Msg(format!("reading {name} from {file}: {e}"))
        };
        let mut bytes = vec![0u8; entry.len];
        {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.seek(SeekFrom::Start(entry.offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| failed(&e))?;
        }
        let view =
            TensorView::new(entry.dtype, entry.shape.clone(), &bytes).map_err(|e| failed(&e))?;
        view.load(&Device::Cpu)
    }
}

/// The tensors a file's header lists, checked against the file's length.
fn header(path: &Path, file: &mut File, index: usize) -> Result<Vec<(String, Entry)>> {
    let bad = |what: String| Error::file(path, format!("is not a safetensors file: {what}"));
    let file_len = file.metadata().map_err(|e| Error::file(path, e))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(bad(format!(
            "a header of {n} bytes in a file of {file_len}"
        )));
    }
    let mut json = vec![0u8; n as usize];
    file.read_exact(&mut json)
        .map_err(|e| Error::file(path, e))?;
    let json: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| bad(format!("its header: {e}")))?;
    let data_start = 8 + n;
    let mut entries = Vec::new();
    for (name, info) in json {
        if name == "__metadata__" {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Info {
            dtype: safetensors::Dtype,
            shape: Vec<usize>,
            data_offsets: (u64, u64),
        }
        let info: Info =
            serde_json::from_value(info).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        let (begin, end) = info.data_offsets;
        let bits = info.dtype.bitsize();
        if !bits.is_multiple_of(8) {
            return Err(bad(format!(
                "tensor {name} is {:?}, not a float type",
                info.dtype
            )));
        }
        let bytes = info.shape.iter().product::<usize>() * bits / 8;
        if end < begin || (end - begin) as usize != bytes || data_start + end > file_len {
            return Err(bad(format!(
                "tensor {name} {:?} {:?} at bytes {begin}..{end} of a {}-byte data section",
                info.dtype,
                info.shape,
                file_len - data_start
            )));
        }
        entries.push((
            name,
            Entry {
                file: index,
                dtype: info.dtype,
                shape: info.shape,
                offset: data_start + begin,
                len: bytes,
            },
        ));
    }
    Ok(entries)
}

impl candle_nn::var_builder::SimpleBackend for WeightFiles {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            }
            .bt())?
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}
