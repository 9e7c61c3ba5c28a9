//! Captions to decoder inputs and labels, as BLIP's fine-tuning prepares them (LAVIS'
//! `BlipCaptionProcessor` and `BlipCaption.forward`), and as VisionEncoderDecoderModel
//! takes its labels.

use candle_core::{Device, Tensor};
use captioner::decoder_tokens;
use text_decoder::TextConfig;
use tokenizers::Tokenizer;

use crate::Result;

/// The label that the loss skips: padding and the prompt's tokens.
pub const IGNORE: i64 = -100;

/// LAVIS' `pre_caption`: lower case; each of `. ! " ( ) * # : ; ~` made a space; runs
/// of two or more whitespace characters made one space; trimmed; at most `max_words`
/// words.
pub fn pre_caption(caption: &str, max_words: usize) -> String {
    let lowered: String = caption
        .to_lowercase()
        .chars()
        .map(|c| if ".!\"()*#:;~".contains(c) { ' ' } else { c })
        .collect();
    // Python's `re.sub(r"\s{2,}", " ", ..)`: a lone tab or newline stays as it is.
    let mut collapsed = String::with_capacity(lowered.len());
    let chars: Vec<char> = lowered.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_whitespace()).count();
        if run >= 2 {
            collapsed.push(' ');
            i += run;
        } else {
            collapsed.push(chars[i]);
            i += 1;
        }
    }
    let trimmed = collapsed.trim_end_matches('\n').trim_matches(' ');
    let words: Vec<&str> = trimmed.split(' ').collect();
    if words.len() > max_words {
        words[..max_words].join(" ")
    } else {
        trimmed.to_string()
    }
}

/// One batch of teacher-forced captions: `input_ids` and `attention_mask` `[B, T]`
/// (u32), and `labels` (row-major `B x T`, [`IGNORE`] where the loss skips).
#[derive(Debug, Clone)]
pub struct TextBatch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub labels: Vec<i64>,
    pub shape: (usize, usize),
}

/// BLIP's recipe, which VisionEncoderDecoderModel's labels follow too: the
/// [`decoder_tokens`] of `prompt + caption` (the start token first), truncated to leave
/// room for the end-of-sequence token added after them (`max_len` tokens at most), and
/// padded to the longest; labels are the tokens, with padding and the prompt's tokens
/// (the start token included) ignored. The loss scores each position against the next
/// label, which is VisionEncoderDecoderModel's right shift of its labels.
pub fn encode(
    tokenizer: &Tokenizer,
    captions: &[String],
    prompt: &str,
    max_len: usize,
    text: &TextConfig,
    device: &Device,
) -> Result<TextBatch> {
    let tokens = |s: &str| decoder_tokens(tokenizer, text, s);
    let prompt_len = if prompt.trim().is_empty() {
        1
    } else {
        tokens(prompt)?.len()
    };
    let rows = captions
        .iter()
        .map(|c| {
            let mut ids = tokens(&format!("{prompt}{c}"))?;
            ids.truncate(max_len.saturating_sub(1).max(1));
            ids.push(text.sep_token_id);
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    let (b, t) = (rows.len(), rows.iter().map(Vec::len).max().unwrap_or(0));
    let (mut ids, mut mask, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        for j in 0..t {
            let real = j < row.len();
            let id = if real { row[j] } else { text.pad_token_id };
            ids.push(id);
            mask.push(u32::from(real));
            labels.push(if !real || j < prompt_len {
                IGNORE
            } else {
                id as i64
            });
        }
    }
    Ok(TextBatch {
        input_ids: Tensor::from_vec(ids, (b, t), device)?,
        attention_mask: Tensor::from_vec(mask, (b, t), device)?,
        labels,
        shape: (b, t),
    })
}
