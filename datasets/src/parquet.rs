//! Parquet files of images, as Hugging Face datasets writes an `Image` column (a struct
//! of `bytes` and `path`) and img2dataset writes its shards (a binary column named by the
//! extension, `jpg`, beside `key`). Read a batch of rows at a time, only the columns
//! needed, so memory does not grow with the file.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::webdataset::ShardReadError;

/// Rows read per batch.
const BATCH_ROWS: usize = 64;

/// Which columns hold the image and the key (`None` finds them, see [`for_each_row`]),
/// and which others to carry along.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub image: Option<String>,
    pub key: Option<String>,
    pub keep: Vec<String>,
}

/// One row: its key, its image's bytes with a name for errors (the struct's `path`, else
/// the key and the column's name) or why it has none, and its value of each kept column
/// (a one-row slice of the batch's array, in [`Columns::keep`]'s order).
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub image: Result<(Vec<u8>, String), String>,
    pub kept: Vec<ArrayRef>,
}

/// The fields of the columns `keep` names, from the schema of the file at `path` (its
/// footer alone is read); an error names a column that is not there, and those that are.
pub fn kept_fields(path: &Path, keep: &[String]) -> Result<Vec<Field>, ShardReadError> {
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| ShardReadError::Parquet(e.to_string()))?;
    let schema = builder.schema();
    keep.iter()
        .map(|name| {
            schema.field_with_name(name).cloned().map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                ShardReadError::Parquet(format!(
                    "no column {name:?} (--keep-columns) among {}",
                    names.join(", ")
                ))
            })
        })
        .collect()
}

/// Calls `each` with every row of the Parquet file at `path`, in order. The image column
/// is `columns.image`, else the first struct column with a binary `bytes` field, else the
/// first binary column named by one of `image_ext`; the key column is `columns.key`,
/// else `key` or `__key__` where present, else the row's index in the file.
pub fn for_each_row<E: From<ShardReadError>>(
    path: &Path,
    columns: &Columns,
    image_ext: &[String],
    mut each: impl FnMut(Row) -> Result<(), E>,
) -> Result<(), E> {
    let err = |e: &dyn std::fmt::Display| ShardReadError::Parquet(e.to_string());
    let file = File::open(path).map_err(ShardReadError::from)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
    let schema = builder.schema().clone();
    let image = find_image(&schema, columns.image.as_deref(), image_ext).map_err(|e| err(&e))?;
    let key = match &columns.key {
        Some(k) if schema.index_of(k).is_err() => {
            return Err(err(&format!("no column {k:?} (--key-column)")).into())
        }
        Some(k) => Some(k.clone()),
        None => ["key", "__key__"]
            .into_iter()
            .find(|k| schema.index_of(k).is_ok())
            .map(String::from),
    };
    let mut wanted = vec![schema.index_of(&image).expect("found in the schema")];
    wanted.extend(key.as_deref().map(|k| schema.index_of(k).expect("checked")));
    for k in &columns.keep {
        let i = schema
            .index_of(k)
            .map_err(|_| err(&format!("no column {k:?} (--keep-columns)")))?;
        wanted.push(i);
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| err(&e))?;
    let mut index = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let keys = match &key {
            Some(k) => {
                Some(arrow_cast::cast(column(&batch, k), &DataType::Utf8).map_err(|e| err(&e))?)
            }
            None => None,
        };
        let images = column(&batch, &image);
        for row in 0..batch.num_rows() {
            let key = match &keys {
                Some(k) if k.is_valid(row) => k.as_string::<i32>().value(row).to_string(),
                _ => index.to_string(),
            };
            let image = image_at(images, row, &key, &image);
            let kept = columns
                .keep
                .iter()
                .map(|k| column(&batch, k).slice(row, 1))
                .collect();
            index += 1;
            each(Row { key, image, kept })?;
        }
    }
    Ok(())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .expect("the projection keeps the column")
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// The image column's name.
fn find_image(
    schema: &Schema,
    named: Option<&str>,
    image_ext: &[String],
) -> Result<String, String> {
    let is_image = |t: &DataType| match t {
        DataType::Struct(fields) => fields
            .iter()
            .any(|f| f.name() == "bytes" && is_binary(f.data_type())),
        t => is_binary(t),
    };
    if let Some(name) = named {
        let field = schema
            .field_with_name(name)
            .map_err(|_| format!("no column {name:?} (--image-column)"))?;
        return if is_image(field.data_type()) {
            Ok(name.into())
        } else {
            Err(format!(
                "column {name:?} is {}, not binary image bytes or a struct with a binary `bytes` field",
                field.data_type()
            ))
        };
    }
    let fields = schema.fields();
    fields
        .iter()
        .find(|f| matches!(f.data_type(), DataType::Struct(_)) && is_image(f.data_type()))
        .or_else(|| {
            fields.iter().find(|f| {
                is_binary(f.data_type()) && image_ext.iter().any(|e| e.eq_ignore_ascii_case(f.name()))
            })
        })
        .map(|f| f.name().clone())
        .ok_or_else(|| {
            let names: Vec<String> = fields
                .iter()
                .map(|f| format!("{} ({})", f.name(), f.data_type()))
                .collect();
            format!(
                "no image column (a struct with a binary `bytes` field, or a binary column named {}) among {}; name it with --image-column",
                image_ext.join(", "),
                names.join(", ")
            )
        })
}

/// Row `row`'s image bytes and name from the image column `images` (named `column`).
fn image_at(
    images: &ArrayRef,
    row: usize,
    key: &str,
    column: &str,
) -> Result<(Vec<u8>, String), String> {
    let (bytes, name) = match images.data_type() {
        DataType::Struct(_) => {
            let s = images.as_struct();
            if s.is_null(row) {
                return Err(format!("{key}: no image (null {column})"));
            }
            let bytes = s.column_by_name("bytes").expect("checked in the schema");
            let path = s.column_by_name("path").and_then(|p| {
                let p = arrow_cast::cast(p, &DataType::Utf8).ok()?;
                p.is_valid(row)
                    .then(|| p.as_string::<i32>().value(row).to_string())
            });
            (binary_at(bytes, row), path)
        }
        _ => (binary_at(images, row), None),
    };
    let name = name.unwrap_or_else(|| format!("{key}.{column}"));
    match bytes {
        Some(b) => Ok((b, name)),
        None => Err(format!("{key}: no image (null {column})")),
    }
}

fn binary_at(a: &ArrayRef, row: usize) -> Option<Vec<u8>> {
    if a.is_null(row) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().value(row).to_vec(),
        DataType::LargeBinary => a.as_binary::<i64>().value(row).to_vec(),
        _ => a.as_binary_view().value(row).to_vec(),
    })
}
