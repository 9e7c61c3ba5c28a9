//! A shard's captions as a Parquet file, a row group per 1024 samples, with the input
//! columns the job keeps after them.

use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::ShardJob;
use crate::output::Record;

/// Samples buffered before they are written as a batch.
const ROWS: usize = 1024;

/// A sample as its row: the key, and its captions with their scores or its error.
type Row = (String, std::result::Result<Vec<(String, f32)>, String>);

pub(super) struct ParquetOut {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: Vec<Row>,
    /// Each kept column's one-row values for `rows`.
    kept: Vec<Vec<ArrayRef>>,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl ParquetOut {
    pub(super) fn new(file: File, job: &ShardJob, kept: Vec<Field>) -> std::io::Result<Self> {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        let mut fields = vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("caption", DataType::Utf8, true),
            Field::new("score", DataType::Float32, true),
            Field::new("captions", list(DataType::Utf8), false),
            Field::new("scores", list(DataType::Float32), false),
            Field::new("error", DataType::Utf8, true),
        ];
        let (ours, kept_columns) = (fields.len(), kept.len());
        // A kept input column named like one of ours is written as `input_NAME`.
        for f in kept {
            let f = f.with_nullable(true);
            let clashes = fields[..ours].iter().any(|o| o.name() == f.name());
            fields.push(if clashes {
                let name = format!("input_{}", f.name());
                f.with_name(name)
            } else {
                f
            });
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![
                KeyValue::new("captioner.model".into(), job.model.clone()),
                KeyValue::new("captioner.settings".into(), job.settings.to_string()),
            ]))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io)?;
        Ok(Self {
            writer,
            schema,
            rows: Vec::with_capacity(ROWS),
            kept: vec![Vec::with_capacity(ROWS); kept_columns],
        })
    }

    pub(super) fn push(
        &mut self,
        key: &str,
        kept: Vec<ArrayRef>,
        record: &Record,
    ) -> std::io::Result<()> {
        for (column, value) in self.kept.iter_mut().zip(kept) {
            column.push(value);
        }
        let texts = match &record.result {
            Ok(t) => Ok(t.iter().map(|t| (t.caption.clone(), t.score)).collect()),
            Err(e) => Err(e.clone()),
        };
        self.rows.push((key.to_string(), texts));
        if self.rows.len() == ROWS {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> std::io::Result<()> {
        let (mut key, mut status, mut caption, mut error) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut score = Float32Builder::new();
        let mut captions = ListBuilder::new(StringBuilder::new());
        let mut scores = ListBuilder::new(Float32Builder::new());
        for (k, texts) in self.rows.drain(..) {
            key.append_value(&k);
            match texts {
                Ok(texts) => {
                    status.append_value("ok");
                    caption.append_option(texts.first().map(|t| t.0.as_str()));
                    score.append_option(texts.first().map(|t| t.1));
                    for (c, s) in &texts {
                        captions.values().append_value(c);
                        scores.values().append_value(*s);
                    }
                    error.append_null();
                }
                Err(e) => {
                    status.append_value("error");
                    caption.append_null();
                    score.append_null();
                    error.append_value(e);
                }
            }
            captions.append(true);
            scores.append(true);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(status.finish()),
            Arc::new(caption.finish()),
            Arc::new(score.finish()),
            Arc::new(captions.finish()),
            Arc::new(scores.finish()),
            Arc::new(error.finish()),
        ];
        for column in &mut self.kept {
            let parts: Vec<&dyn Array> = column.iter().map(|a| a.as_ref()).collect();
            columns.push(arrow_select::concat::concat(&parts).map_err(io)?);
            column.clear();
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(io)?;
        self.writer.write(&batch).map_err(io)
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        if !self.rows.is_empty() {
            self.write()?;
        }
        let file = self.writer.into_inner().map_err(io)?;
        file.sync_all()
    }
}
