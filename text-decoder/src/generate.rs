//! Caption generation over a batch of images: greedy, sampling and beam search, with
//! transformers' logits processors and beam bookkeeping so that the same checkpoint
//! gives the same tokens and scores.
//!
//! Every step runs one decoder forward for all live rows (images x beams). Rows whose
//! caption is final leave the batch at once (their cache rows and, once an image has no
//! live row, its cross-attention keys and values), so finished captions cost nothing.

use candle_core::Tensor;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{CrossKv, Error, KvCache, Result, TextDecoder};

/// When beam search stops, as transformers' `early_stopping` (False, True, "never").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop once the best running beam, normalised by its current length, cannot beat
    /// the worst finished one (transformers' default, `False`).
    #[default]
    Heuristic,
    /// Stop as soon as `num_beams` hypotheses are finished (`True`).
    Always,
    /// As `Heuristic`, but with a positive length penalty the running beam is credited
    /// with the maximum length (`"never"`).
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 keeps all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 keeps all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Tokens generated after the prompt, the end-of-sequence token included.
    pub max_new_tokens: usize,
    /// End-of-sequence is forbidden until this many tokens have been generated.
    pub min_new_tokens: usize,
    pub num_beams: usize,
    /// Finished beams score `sum(log p) / new_tokens ^ length_penalty`.
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// No n-gram of this size occurs twice (prompt included); 0 is off.
    pub no_repeat_ngram_size: usize,
    /// Scores of tokens already in the sequence are divided (or, when negative,
    /// multiplied) by this; 1 is off.
    pub repetition_penalty: f32,
    pub num_return_sequences: usize,
    /// Sample instead of taking the most likely token (greedy search only).
    pub sampling: Option<Sampling>,
    /// BLIP's `[SEP]`.
    pub eos_token_id: u32,
    /// Keep each generated token's cross-attention probabilities.
    pub output_attentions: bool,
}

impl GenerationConfig {
    /// transformers' `GenerationConfig` defaults for a one-token prompt (`max_length` 20).
    pub fn new(eos_token_id: u32) -> Self {
        Self {
            max_new_tokens: 19,
            min_new_tokens: 0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            num_return_sequences: 1,
            sampling: None,
            eos_token_id,
            output_attentions: false,
        }
    }

    /// Sets the lengths from transformers' `max_length`/`min_length`, which count the
    /// prompt's `prompt_len` tokens.
    pub fn with_total_lengths(
        mut self,
        max_length: usize,
        min_length: usize,
        prompt_len: usize,
    ) -> Self {
        self.max_new_tokens = max_length.saturating_sub(prompt_len);
        self.min_new_tokens = min_length.saturating_sub(prompt_len);
        self
    }

    fn validate(&self, prompt_len: usize, max_positions: usize) -> Result<()> {
        let fail = |m: String| Err(Error::Generation(m));
        if prompt_len == 0 {
            return fail("the prompt is empty: it must hold at least the bos token".into());
        }
        if self.max_new_tokens == 0 {
            return fail("max_new_tokens is 0".into());
        }
        if prompt_len + self.max_new_tokens > max_positions {
            return fail(format!(
                "prompt ({prompt_len} tokens) + max_new_tokens ({}) exceeds the model's {max_positions} positions",
                self.max_new_tokens
            ));
        }
        if self.num_beams == 0 || self.num_return_sequences == 0 {
            return fail("num_beams and num_return_sequences must be at least 1".into());
        }
        if self.num_beams > 1 && self.sampling.is_some() {
            return fail(
                "beam search with sampling is not supported: use --beams 1 with sampling".into(),
            );
        }
        if self.num_beams > 1 && self.num_return_sequences > self.num_beams {
            return fail(format!(
                "num_return_sequences ({}) cannot exceed num_beams ({})",
                self.num_return_sequences, self.num_beams
            ));
        }
        if self.num_beams == 1 && self.sampling.is_none() && self.num_return_sequences > 1 {
            return fail(
                "greedy search returns one sequence: use beams or sampling for more".into(),
            );
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return fail(format!(
                "repetition_penalty must be positive, got {}",
                self.repetition_penalty
            ));
        }
        if let Some(s) = &self.sampling {
            if s.temperature.is_nan() || s.temperature <= 0.0 {
                return fail(format!(
                    "temperature must be positive, got {}",
                    s.temperature
                ));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return fail(format!("top_p must be in (0, 1], got {}", s.top_p));
            }
        }
        Ok(())
    }
}

/// One finished caption.
#[derive(Debug, Clone)]
pub struct Hypothesis {
    /// The whole sequence: prompt, generated tokens, and the end token if one was emitted.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Sum of the generated tokens' log-probabilities (after the logits processors)
    /// divided by `new_tokens ^ length_penalty`; for beam search, transformers'
    /// `sequences_scores`.
    pub score: f32,
    /// Per generated token, the cross-attention probabilities `[layers, heads, N]` of
    /// the step that chose it (with `output_attentions`).
    pub cross_attentions: Option<Vec<Tensor>>,
}

impl Hypothesis {
    pub fn new_tokens(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}

/// Captions for `image_embeds` `[B, N, D]` (the vision encoder's output) starting from
/// `prompt` (BLIP: `[DEC]`, optionally followed by the prompt's tokens). Returns, per
/// image, `num_return_sequences` hypotheses, best first.
pub fn generate(
    decoder: &TextDecoder,
    image_embeds: &Tensor,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<Vec<Vec<Hypothesis>>> {
    Ok(generate_with_stats(decoder, image_embeds, prompt, cfg)?.0)
}

/// How much decoding work a [`generate`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Decoder forward passes (one per generated position).
    pub steps: usize,
    /// Rows those passes ran, summed over steps: finished rows no longer count.
    pub row_steps: usize,
}

/// As [`generate`], also reporting the work done.
pub fn generate_with_stats(
    decoder: &TextDecoder,
    image_embeds: &Tensor,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<(Vec<Vec<Hypothesis>>, GenerationStats)> {
    cfg.validate(prompt.len(), decoder.config().max_position_embeddings)?;
    kernels::on_workers(|| run_search(decoder, image_embeds, prompt, cfg))
}

fn run_search(
    decoder: &TextDecoder,
    image_embeds: &Tensor,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<(Vec<Vec<Hypothesis>>, GenerationStats)> {
    let cross = decoder.cross_kv(image_embeds)?;
    let mut stats = GenerationStats::default();
    let search = Search {
        decoder,
        cross: &cross,
        prompt,
        cfg,
    };
    let hyps = if cfg.num_beams > 1 {
        beam_search(search, &mut stats)?
    } else {
        greedy_or_sample(search, &mut stats)?
    };
    Ok((hyps, stats))
}

/// What a search over a batch of images starts from.
#[derive(Clone, Copy)]
struct Search<'a> {
    decoder: &'a TextDecoder,
    cross: &'a CrossKv,
    prompt: &'a [u32],
    cfg: &'a GenerationConfig,
}

/// What one decoder step gives each live row: next-token logits and, when asked, the
/// cross-attention `[layers, heads, N]` of the last position.
struct Step {
    logits: Vec<Vec<f32>>,
    attentions: Option<Tensor>,
    cache: KvCache,
}

/// The rows being decoded: the tokens each feeds next, their self-attention cache, and
/// their images' cross-attention keys and values.
struct Rows {
    inputs: Vec<Vec<u32>>,
    cache: KvCache,
    cross: CrossKv,
}

impl Rows {
    /// `rows` rows that start from the prompt (the first step runs all of it).
    fn start(decoder: &TextDecoder, prompt: &[u32], rows: usize, cross: CrossKv) -> Self {
        Self {
            inputs: vec![prompt.to_vec(); rows],
            cache: decoder.empty_cache(),
            cross,
        }
    }

    /// One decoder step over the rows.
    fn step(
        &self,
        decoder: &TextDecoder,
        output_attentions: bool,
        stats: &mut GenerationStats,
    ) -> Result<Step> {
        let (r, t) = (self.inputs.len(), self.inputs[0].len());
        stats.steps += 1;
        stats.row_steps += r;
        let ids = Tensor::from_vec(self.inputs.concat(), (r, t), decoder.device())?;
        let out = decoder.forward(&ids, &self.cache, &self.cross, None, output_attentions)?;
        let last = out.hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        let logits = decoder.lm_head(&last)?.to_vec2::<f32>()?;
        let attentions = match out.cross_attentions {
            Some(layers) => {
                let last: Vec<Tensor> = layers
                    .iter()
                    .map(|p| p.narrow(2, t - 1, 1)?.squeeze(2))
                    .collect::<candle_core::Result<_>>()?;
                Some(Tensor::stack(&last, 1)?)
            }
            None => None,
        };
        Ok(Step {
            logits,
            attentions,
            cache: out.cache,
        })
    }
}

fn row_attention(attn: &Option<Tensor>, row: usize) -> Result<Option<Tensor>> {
    Ok(match attn {
        Some(a) => Some(a.get(row)?),
        None => None,
    })
}

fn index_tensor(rows: &[usize], decoder: &TextDecoder) -> Result<Tensor> {
    let ids: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    Ok(Tensor::from_vec(ids, rows.len(), decoder.device())?)
}

/// transformers' logits processors, in place on one row's scores: repetition penalty,
/// no-repeat n-grams and the minimum length.
fn apply_processors(scores: &mut [f32], tokens: &[u32], new_len: usize, cfg: &GenerationConfig) {
    if cfg.repetition_penalty != 1.0 {
        let mut seen = tokens.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            let s = &mut scores[t as usize];
            *s = if *s < 0.0 {
                *s * cfg.repetition_penalty
            } else {
                *s / cfg.repetition_penalty
            };
        }
    }
    let n = cfg.no_repeat_ngram_size;
    if n > 0 && tokens.len() >= n {
        let prefix = &tokens[tokens.len() + 1 - n..];
        for start in 0..=tokens.len() - n {
            if &tokens[start..start + n - 1] == prefix {
                scores[tokens[start + n - 1] as usize] = f32::NEG_INFINITY;
            }
        }
    }
    if new_len < cfg.min_new_tokens {
        scores[cfg.eos_token_id as usize] = f32::NEG_INFINITY;
    }
}

fn log_softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = scores.iter().map(|&s| (s - max).exp()).sum();
    let log_z = max + sum.ln();
    scores.iter().map(|&s| s - log_z).collect()
}

fn argmax(scores: &[f32]) -> usize {
    // The first of equal maxima, as torch.argmax.
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

fn normalise(sum_logprobs: f32, new_len: usize, length_penalty: f32) -> f32 {
    sum_logprobs / (new_len as f64).powf(length_penalty as f64) as f32
}

/// Temperature, top-k and top-p (as transformers' warpers), then a draw.
fn sample(scores: &[f32], s: &Sampling, rng: &mut StdRng) -> usize {
    let mut scaled: Vec<f32> = scores.iter().map(|&x| x / s.temperature).collect();
    if s.top_k > 0 && s.top_k < scaled.len() {
        let mut sorted = scaled.clone();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[s.top_k - 1];
        scaled
            .iter_mut()
            .filter(|x| **x < kth)
            .for_each(|x| *x = f32::NEG_INFINITY);
    }
    let probs: Vec<f64> = log_softmax(&scaled)
        .iter()
        .map(|&l| (l as f64).exp())
        .collect();
    let mut keep = vec![true; probs.len()];
    if s.top_p < 1.0 {
        // Drop the least likely tokens while the mass dropped stays within 1 - top_p.
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
        let mut cumulative = 0.0;
        for &i in &order[..order.len() - 1] {
            cumulative += probs[i];
            if cumulative > 1.0 - s.top_p as f64 {
                break;
            }
            keep[i] = false;
        }
    }
    let total: f64 = probs
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(p, _)| p)
        .sum();
    let mut draw = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, (&p, &k)) in probs.iter().zip(&keep).enumerate() {
        if !k || p == 0.0 {
            continue;
        }
        last = i;
        if draw < p {
            return i;
        }
        draw -= p;
    }
    last
}

struct Row {
    image: usize,
    tokens: Vec<u32>,
    logprob_sum: f32,
    attentions: Vec<Tensor>,
    rng: Option<StdRng>,
}

/// Greedy search, or sampling with `num_return_sequences` independent rows per image.
fn greedy_or_sample(search: Search, stats: &mut GenerationStats) -> Result<Vec<Vec<Hypothesis>>> {
    let (decoder, cross, prompt, cfg) = (search.decoder, search.cross, search.prompt, search.cfg);
    let images = cross.num_images()?;
    let per_image = cfg.num_return_sequences;
    let mut rows: Vec<Row> = (0..images * per_image)
        .map(|i| Row {
            image: i / per_image,
            tokens: prompt.to_vec(),
            logprob_sum: 0.0,
            attentions: Vec::new(),
            // A stream per row, so a row's draws do not depend on the others.
            rng: cfg.sampling.as_ref().map(|s| {
                StdRng::seed_from_u64(s.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }),
        })
        .collect();
    let mut live: Vec<usize> = (0..rows.len()).collect();
    let cross = if per_image > 1 {
        cross.select(&index_tensor(
            &rows.iter().map(|r| r.image).collect::<Vec<_>>(),
            decoder,
        )?)?
    } else {
        cross.clone()
    };
    let mut batch = Rows::start(decoder, prompt, rows.len(), cross);
    for new_len in 0..cfg.max_new_tokens {
        let out = batch.step(decoder, cfg.output_attentions, stats)?;
        let mut keep = Vec::with_capacity(live.len());
        for (pos, (&r, mut scores)) in live.iter().zip(out.logits).enumerate() {
            let row = &mut rows[r];
            apply_processors(&mut scores, &row.tokens, new_len, cfg);
            let token = match (&cfg.sampling, row.rng.as_mut()) {
                (Some(s), Some(rng)) => sample(&scores, s, rng),
                _ => argmax(&scores),
            };
            row.logprob_sum += log_softmax(&scores)[token];
            row.tokens.push(token as u32);
            if let Some(a) = row_attention(&out.attentions, pos)? {
                row.attentions.push(a);
            }
            if token as u32 != cfg.eos_token_id && new_len + 1 < cfg.max_new_tokens {
                keep.push(pos);
            }
        }
        if keep.is_empty() {
            break;
        }
        batch.cache = out.cache;
        if keep.len() < live.len() {
            let idx = index_tensor(&keep, decoder)?;
            batch.cache = batch.cache.select(&idx)?;
            batch.cross = batch.cross.select(&idx)?;
            live = keep.iter().map(|&p| live[p]).collect();
        }
        batch.inputs = live
            .iter()
            .map(|&r| vec![*rows[r].tokens.last().unwrap_or(&0)])
            .collect();
    }
    let mut out: Vec<Vec<Hypothesis>> = (0..images).map(|_| Vec::new()).collect();
    for row in rows {
        let new_len = row.tokens.len() - prompt.len();
        out[row.image].push(Hypothesis {
            score: normalise(row.logprob_sum, new_len, cfg.length_penalty),
            prompt_len: prompt.len(),
            cross_attentions: cfg.output_attentions.then_some(row.attentions),
            tokens: row.tokens,
        });
    }
    if cfg.sampling.is_some() {
        for hyps in &mut out {
            hyps.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
    }
    Ok(out)
}

#[derive(Clone)]
struct Beam {
    tokens: Vec<u32>,
    /// Running sum of log-probabilities (with transformers' -1e9 for dead slots).
    score: f32,
    attentions: Vec<Tensor>,
}

/// One image's beams: transformers' running and finished sets.
struct ImageBeams {
    running: Vec<Beam>,
    /// Best first, at most `num_beams`, scores already length-normalised.
    finished: Vec<(f32, Beam)>,
    improvable: bool,
}

const DEAD: f32 = -1.0e9;

/// Beam search as transformers' `_beam_search`: each step keeps the top `2K` candidates
/// of an image over all its beams' tokens; those among the top `K` that end (EOS or the
/// length limit) join the finished set, the best `K` that don't carry on.
fn beam_search(search: Search, stats: &mut GenerationStats) -> Result<Vec<Vec<Hypothesis>>> {
    let (decoder, cross, prompt, cfg) = (search.decoder, search.cross, search.prompt, search.cfg);
    let k = cfg.num_beams;
    let images = cross.num_images()?;
    let mut state: Vec<ImageBeams> = (0..images)
        .map(|_| ImageBeams {
            // Only beam 0 is live at first, so the K copies of the prompt don't collide.
            running: (0..k)
                .map(|b| Beam {
                    tokens: prompt.to_vec(),
                    score: if b == 0 { 0.0 } else { DEAD },
                    attentions: vec![],
                })
                .collect(),
            finished: Vec::new(),
            improvable: true,
        })
        .collect();
    let mut active: Vec<usize> = (0..images).collect();
    // The first step runs the prompt once per image; its K beams are identical.
    let mut batch = Rows::start(decoder, prompt, images, cross.clone());
    let mut rows_per_image = 1;
    for new_len in 0..cfg.max_new_tokens {
        let out = batch.step(decoder, cfg.output_attentions, stats)?;
        let step_len = new_len + 1;
        let mut next_rows = Vec::with_capacity(active.len() * k);
        let mut still_active = Vec::with_capacity(active.len());
        for (pos, &img) in active.iter().enumerate() {
            let st = &mut state[img];
            let row_of = |beam: usize| pos * rows_per_image + beam.min(rows_per_image - 1);
            // Per beam: processed log-probs plus the running score.
            let mut candidates: Vec<(f32, usize, u32)> =
                Vec::with_capacity(k * out.logits[0].len());
            for (b, beam) in st.running.iter().enumerate() {
                let mut lp = log_softmax(&out.logits[row_of(b)]);
                apply_processors(&mut lp, &beam.tokens, new_len, cfg);
                candidates.extend(
                    lp.iter()
                        .enumerate()
                        .map(|(t, &l)| (l + beam.score, b, t as u32)),
                );
            }
            let keep = (2 * k).min(candidates.len());
            // Best first; ties go to the lower flat index, like a stable top-k.
            let order = |a: &(f32, usize, u32), b: &(f32, usize, u32)| {
                b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
            };
            candidates.select_nth_unstable_by(keep - 1, order);
            candidates.truncate(keep);
            candidates.sort_by(order);

            let ends = |tok: u32| tok == cfg.eos_token_id || step_len >= cfg.max_new_tokens;
            let extend = |b: usize, tok: u32| -> Result<Beam> {
                let src = &st.running[b];
                let mut attentions = src.attentions.clone();
                if let Some(a) = row_attention(&out.attentions, row_of(b))? {
                    attentions.push(a);
                }
                let mut tokens = src.tokens.clone();
                tokens.push(tok);
                Ok(Beam {
                    tokens,
                    score: 0.0,
                    attentions,
                })
            };
            let blocked = !st.improvable
                || (cfg.early_stopping == EarlyStopping::Always && st.finished.len() == k);
            if !blocked {
                for &(score, b, tok) in candidates.iter().take(k) {
                    if ends(tok) {
                        st.finished.push((
                            normalise(score, step_len, cfg.length_penalty),
                            extend(b, tok)?,
                        ));
                    }
                }
                st.finished.sort_by(|a, b| b.0.total_cmp(&a.0));
                st.finished.truncate(k);
            }
            let mut carried: Vec<(f32, usize, u32)> = candidates
                .iter()
                .map(|&(s, b, t)| (if ends(t) { s + DEAD } else { s }, b, t))
                .collect();
            carried.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut running = Vec::with_capacity(k);
            for &(score, b, tok) in carried.iter().take(k) {
                next_rows.push(row_of(b));
                running.push(Beam {
                    score,
                    ..extend(b, tok)?
                });
            }
            st.running = running;

            let hyp_len = if cfg.early_stopping == EarlyStopping::Never && cfg.length_penalty > 0.0
            {
                cfg.max_new_tokens
            } else {
                step_len
            };
            let best_running = normalise(st.running[0].score, hyp_len, cfg.length_penalty);
            let worst_finished = if st.finished.len() == k {
                st.finished[k - 1].0
            } else {
                DEAD
            };
            st.improvable &= best_running > worst_finished;
            let full = cfg.early_stopping == EarlyStopping::Always && st.finished.len() == k;
            if st.improvable && !full && step_len < cfg.max_new_tokens {
                still_active.push(pos);
            } else {
                next_rows.truncate(next_rows.len() - k);
            }
        }
        if still_active.is_empty() {
            break;
        }
        batch.cache = out.cache.select(&index_tensor(&next_rows, decoder)?)?;
        if still_active.len() < active.len() {
            batch.cross = batch.cross.select(&index_tensor(&still_active, decoder)?)?;
        }
        active = still_active.iter().map(|&p| active[p]).collect();
        batch.inputs = active
            .iter()
            .flat_map(|&img| {
                state[img]
                    .running
                    .iter()
                    .map(|b| vec![*b.tokens.last().unwrap_or(&0)])
            })
            .collect();
        rows_per_image = k;
    }
    Ok(state
        .into_iter()
        .map(|st| {
            st.finished
                .into_iter()
                .take(cfg.num_return_sequences)
                .map(|(score, beam)| Hypothesis {
                    tokens: beam.tokens,
                    prompt_len: prompt.len(),
                    score,
                    cross_attentions: cfg.output_attentions.then_some(beam.attentions),
                })
                .collect()
        })
        .collect())
}
