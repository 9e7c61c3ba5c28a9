//! Captions to decoder inputs and labels, as BLIP's fine-tuning prepares them (LAVIS'
//! `BlipCaptionProcessor` and `BlipCaption.forward`).

use candle_core::{Device, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{Error, Result};

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

/// BLIP's recipe: `prompt + caption` tokenized with `[CLS]` .. `[SEP]`, truncated to
/// `max_len` tokens and padded to the longest; the first token replaced by `[DEC]`
/// (`bos`); labels are the tokens, with padding and the prompt's tokens (`[DEC]`
/// included) ignored.
pub fn encode(
    tokenizer: &Tokenizer,
    captions: &[String],
    prompt: &str,
    max_len: usize,
    bos: u32,
    device: &Device,
) -> Result<TextBatch> {
    let mut tok = tokenizer.clone();
    let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    tok.with_truncation(Some(TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(err)?;
    let pad_id = tok.get_padding().map(|p| p.pad_id).unwrap_or(0);
    let pad_token = tok.id_to_token(pad_id).unwrap_or_else(|| "[PAD]".into());
    tok.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id,
        pad_token,
        ..Default::default()
    }));
    // LAVIS: the prompt's tokens with [CLS], without [SEP].
    let prompt_len = tok.encode(prompt, true).map_err(err)?.get_ids().len() - 1;
    let texts: Vec<String> = captions.iter().map(|c| format!("{prompt}{c}")).collect();
    let encodings = tok.encode_batch(texts, true).map_err(err)?;
    let (b, t) = (encodings.len(), encodings.first().map_or(0, |e| e.len()));
    let (mut ids, mut mask, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for e in &encodings {
        for (j, (&id, &m)) in e.get_ids().iter().zip(e.get_attention_mask()).enumerate() {
            let id = if j == 0 { bos } else { id };
            ids.push(id);
            mask.push(m);
            labels.push(if m == 0 || j < prompt_len {
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
