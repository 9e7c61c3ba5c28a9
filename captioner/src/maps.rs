//! Per-word attention maps from the cross-attention of each generated token: one
//! decoder layer (or the mean over layers), the mean over heads, the class token (and
//! DeiT's distillation token) left out, the rest laid on the patch grid, and the pieces
//! of a word (WordPiece's, or byte-level BPE's) averaged.

use candle_core::Tensor;
use serde::Serialize;
use tokenizers::{ModelWrapper, Tokenizer};

use crate::{Error, Result};

/// Which decoder layer's cross-attention a map shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layer {
    /// The mean over all layers.
    #[default]
    Mean,
    /// One layer, counted from 0.
    Index(usize),
}

impl Layer {
    /// This layer, if a decoder of `layers` layers has it.
    pub fn within(self, layers: usize) -> Result<Self> {
        match self {
            Layer::Index(l) if l >= layers => Err(Error::Other(format!(
                "--attn-layer {l}: the decoder has {layers} layers (0 to {})",
                layers.saturating_sub(1)
            ))),
            layer => Ok(layer),
        }
    }
}

impl From<Option<usize>> for Layer {
    /// `--attn-layer N` when given, else the mean.
    fn from(arg: Option<usize>) -> Self {
        arg.map_or(Layer::Mean, Layer::Index)
    }
}

/// A word of a caption and where the decoder looked while writing it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WordMap {
    pub word: String,
    /// Its tokens as the tokenizer spells them (WordPiece's "##" marks a continuation;
    /// byte-level BPE's "Ġ" a word after a space).
    pub tokens: Vec<String>,
    /// Where those tokens are among the generated tokens.
    pub positions: Vec<usize>,
    /// Attention on each patch, `rows × cols` row-major: the mean of its tokens'. The
    /// class token's share is left out, so a map sums to at most 1.
    pub weights: Vec<f32>,
}

/// The words of one caption with their maps over a `rows × cols` patch grid.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WordMaps {
    pub rows: usize,
    pub cols: usize,
    pub words: Vec<WordMap>,
}

/// How a token stands in a caption's words: it starts a word, or continues the last.
fn piece(tokenizer: &Tokenizer, id: u32) -> (bool, String) {
    let token = tokenizer
        .id_to_token(id)
        .unwrap_or_else(|| format!("[{id}]"));
    if let ModelWrapper::BPE(_) = tokenizer.get_model() {
        // Byte-level pieces read as text once decoded; a word starts after a space.
        let text = tokenizer.decode(&[id], false).unwrap_or(token);
        return match text.strip_prefix(char::is_whitespace) {
            Some(rest) => (true, rest.trim_start().to_string()),
            None => (false, text),
        };
    }
    match token.strip_prefix("##") {
        Some(rest) => (false, rest.to_string()),
        None => (true, token),
    }
}

/// The maps of the `generated` tokens, whose cross-attentions (`[layers, heads,
/// prefix + patches]` each) are `attentions`; the first `prefix` image tokens (the class
/// token, and DeiT's distillation token) are left out. Tokens in `skip` (`[SEP]`,
/// padding) get no word.
pub fn word_maps(
    generated: &[u32],
    attentions: &[Tensor],
    tokenizer: &Tokenizer,
    skip: &[u32],
    layer: Layer,
    prefix: usize,
) -> Result<WordMaps> {
    if generated.len() != attentions.len() {
        return Err(Error::Other(format!(
            "{} generated tokens but {} cross-attentions",
            generated.len(),
            attentions.len()
        )));
    }
    let mut grid = None;
    let mut words: Vec<WordMap> = Vec::new();
    let mut pieces = 0usize; // tokens in the last word, for its mean
    for (pos, (&id, attn)) in generated.iter().zip(attentions).enumerate() {
        if skip.contains(&id) {
            continue;
        }
        let patches = patch_weights(attn, layer, prefix)?;
        let (rows, cols) = *grid.get_or_insert(square_grid(patches.len())?);
        if rows * cols != patches.len() {
            return Err(Error::Other("cross-attentions of different lengths".into()));
        }
        let token = tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| format!("[{id}]"));
        let (starts, text) = piece(tokenizer, id);
        match (starts, words.last_mut()) {
            (false, Some(word)) => {
                word.word.push_str(&text);
                word.tokens.push(token.clone());
                word.positions.push(pos);
                pieces += 1;
                // A running mean over the word's pieces.
                let k = pieces as f32;
                for (w, p) in word.weights.iter_mut().zip(&patches) {
                    *w += (p - *w) / k;
                }
            }
            _ => {
                pieces = 1;
                words.push(WordMap {
                    word: text,
                    tokens: vec![token],
                    positions: vec![pos],
                    weights: patches,
                });
            }
        }
    }
    let (rows, cols) = grid.unwrap_or((0, 0));
    Ok(WordMaps { rows, cols, words })
}

/// One token's attention on the patches: the chosen layer (or the layers' mean), the
/// heads' mean, without the first `prefix` tokens.
fn patch_weights(attn: &Tensor, layer: Layer, prefix: usize) -> Result<Vec<f32>> {
    let (layers, heads, n) = attn.dims3()?;
    let all = attn.flatten_all()?.to_vec1::<f32>()?;
    let chosen: Vec<usize> = match layer {
        Layer::Mean => (0..layers).collect(),
        Layer::Index(l) if l < layers => vec![l],
        Layer::Index(l) => {
            return Err(Error::Other(format!(
                "--attn-layer {l}: the decoder has {layers} layers (0 to {})",
                layers - 1
            )))
        }
    };
    let scale = 1.0 / (chosen.len() * heads) as f32;
    let mut out = vec![0f32; n.saturating_sub(prefix)];
    for l in chosen {
        for h in 0..heads {
            let row = &all[(l * heads + h) * n..][..n];
            out.iter_mut()
                .zip(&row[prefix.min(n)..])
                .for_each(|(o, a)| *o += a * scale);
        }
    }
    Ok(out)
}

/// The square grid of `patches` patches (BLIP's images are square: 24 × 24 at 384 px).
fn square_grid(patches: usize) -> Result<(usize, usize)> {
    let side = (patches as f64).sqrt().round() as usize;
    if side * side != patches || side == 0 {
        return Err(Error::Other(format!(
            "{patches} image patches do not make a square grid"
        )));
    }
    Ok((side, side))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A tokenizer whose vocabulary is `words`, ids in order: WordPiece, or with
    /// `byte_level` a byte-level BPE (GPT-2's kind).
    fn tokenizer_of(words: &[&str], byte_level: bool) -> Tokenizer {
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i.into()))
            .collect();
        let bytes = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
                                       "trim_offsets": true, "use_regex": true});
        let (model, pieces) = if byte_level {
            let model = serde_json::json!({"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "vocab": vocab, "merges": []});
            (model, bytes)
        } else {
            let model = serde_json::json!({"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab});
            (model, serde_json::Value::Null)
        };
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": pieces, "post_processor": null,
            "decoder": pieces, "model": model
        });
        Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap()
    }

    fn tokenizer(words: &[&str]) -> Tokenizer {
        tokenizer_of(words, false)
    }

    #[test]
    fn byte_level_pieces_join_until_a_space_and_deit_drops_two_tokens() {
        let tok = tokenizer_of(
            &["<|endoftext|>", "a", "\u{120}red", "\u{120}circ", "le"],
            true,
        );
        // 1 layer, 1 head, class + distillation token + 2×2 patches.
        let attn = |v: [f32; 6]| Tensor::from_vec(v.to_vec(), (1, 1, 6), &Device::Cpu).unwrap();
        let maps = word_maps(
            &[1, 2, 3, 4, 0],
            &[
                attn([0.5, 0.5, 0.0, 0.0, 0.0, 0.0]),
                attn([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
                attn([0.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
                attn([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
                attn([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            ],
            &tok,
            &[0],
            Layer::Mean,
            2,
        )
        .unwrap();
        assert_eq!((maps.rows, maps.cols), (2, 2));
        let words: Vec<&str> = maps.words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["a", "red", "circle"]);
        assert_eq!(maps.words[2].tokens, ["\u{120}circ", "le"]);
        close(&maps.words[0].weights, &[0.0; 4]);
        close(&maps.words[1].weights, &[1.0, 0.0, 0.0, 0.0]);
        close(&maps.words[2].weights, &[0.0, 0.5, 0.0, 0.5]);
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    fn sep_like() -> Tensor {
        Tensor::ones((2, 2, 5), candle_core::DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn pieces_merge_heads_average_and_the_class_token_is_dropped() {
        let tok = tokenizer(&["[SEP]", "red", "circ", "##le"]);
        // 2 layers, 2 heads, class token + 2×2 patches; one map per generated token.
        let attn =
            |vals: [[f32; 5]; 4]| Tensor::from_vec(vals.concat(), (2, 2, 5), &Device::Cpu).unwrap();
        let a = attn([
            [0.2, 0.8, 0.0, 0.0, 0.0],
            [0.2, 0.0, 0.8, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]);
        let b = attn([[0.0, 0.0, 0.0, 1.0, 0.0]; 4]);
        let c = attn([[0.0, 0.0, 0.0, 0.0, 1.0]; 4]);
        let sep = attn([[1.0, 0.0, 0.0, 0.0, 0.0]; 4]);
        let maps = word_maps(
            &[1, 2, 3, 0],
            &[a.clone(), b, c, sep],
            &tok,
            &[0],
            Layer::Mean,
            1,
        )
        .unwrap();
        assert_eq!((maps.rows, maps.cols), (2, 2));
        let words: Vec<&str> = maps.words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["red", "circle"]);
        close(&maps.words[0].weights, &[0.45, 0.2, 0.0, 0.25]);
        close(&maps.words[1].weights, &[0.0, 0.0, 0.5, 0.5]);
        assert_eq!(maps.words[1].positions, [1, 2]);
        assert_eq!(maps.words[1].tokens, ["circ", "##le"]);
        let first = word_maps(&[1], &[a], &tok, &[0], Layer::Index(1), 1).unwrap();
        close(&first.words[0].weights, &[0.5, 0.0, 0.0, 0.5]);
        assert!(word_maps(&[1], &[sep_like()], &tok, &[0], Layer::Index(2), 1).is_err());
    }
}
