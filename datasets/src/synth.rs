//! A synthetic captioning data set made here: one to three coloured shapes on a muted
//! background, five captions each, written as PNGs and COCO caption annotation files that
//! also carry each image's scene. It trains and tests the small default model, and the
//! scenes' boxes say where its cross-attention ought to look.
//!
//! Everything comes from a fixed RNG (SplitMix64) seeded by `(seed, split, index)`, so the
//! same options give byte-identical files on every machine and with every crate version.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// The smallest image side [`scene`] lays objects out in.
pub const MIN_SIZE: u32 = 32;
/// Per-pixel noise: each channel moves by up to this much either way.
pub const NOISE: u8 = 12;
pub const CAPTIONS_PER_IMAGE: usize = 5;
/// Free pixels kept between two objects' boxes, and between a box and the image's edge.
const MARGIN: u32 = 2;
/// Image ids are `split offset + index + 1`, so ids are unique across splits while a
/// split stays under this many images (file names have six digits too).
const SPLIT_IDS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------
// Vocabulary: shapes, colours, sizes, splits, and the words captions use for them.

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
    ];

    pub fn name(&self) -> &'static str {
        self.words()[0]
    }

    /// The nouns captions use for the shape, its name first; [`names_scene`] knows all
    /// of them, singular or plural.
    pub fn words(&self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["circle", "disc"],
            Shape::Square => &["square", "box"],
            Shape::Triangle => &["triangle"],
            Shape::Diamond => &["diamond", "rhombus"],
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
}

impl Color {
    pub const ALL: [Color; 6] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Purple,
        Color::Orange,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Purple => "purple",
            Color::Orange => "orange",
        }
    }

    /// Saturated and far apart (the closest pair, yellow and orange, differs by 80 in
    /// green), so noise never makes one colour look like another or like a background.
    pub fn rgb(&self) -> [u8; 3] {
        match self {
            Color::Red => [220, 40, 40],
            Color::Green => [40, 170, 60],
            Color::Blue => [40, 90, 230],
            Color::Yellow => [240, 210, 30],
            Color::Purple => [150, 50, 200],
            Color::Orange => [250, 130, 20],
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SizeClass {
    Small,
    Large,
}

impl SizeClass {
    pub fn name(&self) -> &'static str {
        self.words()[0]
    }

    pub fn words(&self) -> &'static [&'static str] {
        match self {
            SizeClass::Small => &["small", "little"],
            SizeClass::Large => &["large", "big"],
        }
    }

    /// The range of an object's side as a share of the image side, in percent.
    fn percent(&self) -> (u32, u32) {
        match self {
            SizeClass::Small => (18, 26),
            SizeClass::Large => (30, 40),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The id of the split's image `index`.
    pub fn image_id(&self, index: usize) -> i64 {
        (*self as usize * SPLIT_IDS + index + 1) as i64
    }
}

/// A noun's plural: box -> boxes, rhombus -> rhombuses, circle -> circles.
fn plural(noun: &str) -> String {
    if noun.ends_with('x') || noun.ends_with('s') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

// ---------------------------------------------------------------------------------------
// Scenes: what an image shows, and where.

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Scene {
    /// The background's colour; its top row's when `background_bottom` is set.
    pub background: [u8; 3],
    /// Set for a vertical gradient from `background` (top) to this colour (bottom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_bottom: Option<[u8; 3]>,
    /// Seeds the per-pixel noise, so that [`render`] needs nothing but the scene.
    pub noise_seed: u32,
    pub objects: Vec<Object>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub color: Color,
    pub size: SizeClass,
    /// x, y, width, height in pixels; always square.
    pub bbox: [u32; 4],
}

impl Scene {
    /// The background colour of row `y` of an image `size` pixels high, before noise.
    pub fn background_at(&self, y: u32, size: u32) -> [u8; 3] {
        let Some(bottom) = self.background_bottom else {
            return self.background;
        };
        let span = size.saturating_sub(1).max(1);
        let y = y.min(span);
        std::array::from_fn(|c| {
            let top = u32::from(self.background[c]) * (span - y);
            ((top + u32::from(bottom[c]) * y + span / 2) / span) as u8
        })
    }
}

impl Object {
    /// Whether pixel (x, y), taken at its centre, is inside the shape: a circle or a
    /// rhombus inscribed in the box, the box itself, or a triangle with its apex at the
    /// middle of the box's top and its base along the box's bottom.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let [bx, by, w, h] = self.bbox.map(f64::from);
        let (px, py) = (f64::from(x) + 0.5 - bx, f64::from(y) + 0.5 - by);
        if px < 0.0 || py < 0.0 || px > w || py > h {
            return false;
        }
        // -1..1 across the box.
        let (u, v) = (px / w * 2.0 - 1.0, py / h * 2.0 - 1.0);
        match self.shape {
            Shape::Square => true,
            Shape::Circle => u * u + v * v <= 1.0,
            Shape::Diamond => u.abs() + v.abs() <= 1.0,
            Shape::Triangle => u.abs() <= (v + 1.0) / 2.0,
        }
    }

    /// Twice the box's centre, to keep it in integers.
    fn centre2(&self) -> (i64, i64) {
        let [x, y, w, h] = self.bbox.map(i64::from);
        (2 * x + w, 2 * y + h)
    }

    /// Whether the boxes come closer than [`MARGIN`].
    fn crowds(&self, other: &Object) -> bool {
        let ([ax, ay, aw, ah], [bx, by, bw, bh]) = (self.bbox, other.bbox);
        let apart = ax + aw + MARGIN <= bx
            || bx + bw + MARGIN <= ax
            || ay + ah + MARGIN <= by
            || by + bh + MARGIN <= ay;
        !apart
    }
}

/// One image's scene, deterministic from `(seed, split, index)`.
///
/// # Panics
/// If `size` is under [`MIN_SIZE`].
pub fn scene(seed: u64, split: Split, index: usize, size: u32) -> Scene {
    assert!(
        size >= MIN_SIZE,
        "synthetic images are at least {MIN_SIZE} pixels wide"
    );
    let mut rng = Rng::new(stream(seed, split, index, Stream::Scene));
    let background = muted(&mut rng);
    let background_bottom = rng.chance(2, 5).then(|| muted(&mut rng));
    let noise_seed = rng.next_u64() as u32;
    let count = 1 + rng.below(3);
    // Fewer objects only if a hundred layouts all failed, which MIN_SIZE makes vanishingly
    // rare; one object always fits.
    let objects = (1..=count)
        .rev()
        .find_map(|n| (0..100).find_map(|_| layout(&mut rng, n, size)))
        .expect("one object fits any image of MIN_SIZE");
    Scene {
        background,
        background_bottom,
        noise_seed,
        objects,
    }
}

/// A low-saturation colour: a gray with a slight tint, far from every object colour.
fn muted(rng: &mut Rng) -> [u8; 3] {
    let gray = rng.range(70, 190);
    [0; 3].map(|_| (gray + rng.range(0, 32) - 16) as u8)
}

/// `count` objects placed by rejection sampling, or `None` if one found no room.
fn layout(rng: &mut Rng, count: usize, size: u32) -> Option<Vec<Object>> {
    let mut objects: Vec<Object> = Vec::with_capacity(count);
    for _ in 0..count {
        let class = rng.pick(&[SizeClass::Small, SizeClass::Large]);
        let (lo, hi) = class.percent();
        let side = rng.range((size * lo).div_ceil(100), size * hi / 100);
        let (shape, color) = (rng.pick(&Shape::ALL), rng.pick(&Color::ALL));
        let place = |rng: &mut Rng| {
            let (x, y) = (
                rng.range(MARGIN, size - side - MARGIN),
                rng.range(MARGIN, size - side - MARGIN),
            );
            let object = Object {
                shape,
                color,
                size: class,
                bbox: [x, y, side, side],
            };
            (!objects.iter().any(|o| o.crowds(&object))).then_some(object)
        };
        let object = (0..50).find_map(|_| place(rng))?;
        objects.push(object);
    }
    Some(objects)
}

// ---------------------------------------------------------------------------------------
// Rendering.

/// The scene as an image `size` pixels square: background, shapes in flat colour, then
/// uniform noise of up to [`NOISE`] per channel on every pixel.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    let mut rng = Rng::new(u64::from(scene.noise_seed));
    let mut image = RgbImage::new(size, size);
    let spread = 2 * u32::from(NOISE) + 1;
    for y in 0..size {
        let background = scene.background_at(y, size);
        for x in 0..size {
            let base = scene
                .objects
                .iter()
                .find(|o| o.contains(x, y))
                .map_or(background, |o| o.color.rgb());
            let noise = rng.next_u64().to_le_bytes();
            let pixel = std::array::from_fn(|c| {
                let n = ((u32::from(noise[c]) * spread) >> 8) as i32 - i32::from(NOISE);
                (i32::from(base[c]) + n).clamp(0, 255) as u8
            });
            image.put_pixel(x, y, image::Rgb(pixel));
        }
    }
    image
}

// ---------------------------------------------------------------------------------------
// Captions: five per image from a few templates, with synonyms, counts, sizes, relations
// and background mentions, each naming every object by colour and shape.

#[derive(Clone, Copy)]
enum Template {
    List,
    ThereIs,
    PictureOf,
    CountFirst,
    Background,
    InImage,
    Relation,
}

/// Objects of one colour, shape (and size, when the caption gives sizes), named together:
/// "two red circles".
struct Group {
    color: Color,
    shape: Shape,
    size: Option<SizeClass>,
    count: usize,
}

/// Five captions of the scene, different from each other where the templates allow.
pub fn captions(scene: &Scene, rng_seed: u64) -> Vec<String> {
    let mut rng = Rng::new(rng_seed);
    if scene.objects.is_empty() {
        return [
            "an empty picture",
            "a plain background",
            "nothing but the background",
            "there is nothing here",
            "an empty image",
        ]
        .map(String::from)
        .to_vec();
    }
    use Template::*;
    let mut templates = vec![List, ThereIs, PictureOf, CountFirst, Background, InImage];
    if scene.objects.len() > 1 {
        templates.push(Relation);
    }
    rng.shuffle(&mut templates);
    let mut out: Vec<String> = Vec::with_capacity(CAPTIONS_PER_IMAGE);
    for &template in templates.iter().cycle().take(CAPTIONS_PER_IMAGE) {
        // Synonyms and sizes vary even within a template: a few tries for a new caption.
        let mut caption = write_caption(template, scene, &mut rng);
        for _ in 0..10 {
            if !out.contains(&caption) {
                break;
            }
            caption = write_caption(template, scene, &mut rng);
        }
        out.push(caption);
    }
    out
}

fn write_caption(template: Template, scene: &Scene, rng: &mut Rng) -> String {
    // A third of the captions give sizes: "a large red circle".
    let sizes = rng.chance(1, 3);
    // The caption's word for a single object, the same throughout: "a", "one", "a single".
    let one = rng.pick(&["a", "a", "a", "a", "one", "a single"]);
    let groups = groups(scene, sizes, rng);
    let list = list(&groups, one, rng);
    let text = match template {
        Template::List => list,
        Template::ThereIs => {
            let verb = if groups[0].count > 1 { "are" } else { "is" };
            format!("there {verb} {list}")
        }
        Template::PictureOf => {
            let lead = rng.pick(&["a picture of", "an image of", "a photo of", "a drawing of"]);
            format!("{lead} {list}")
        }
        Template::CountFirst => {
            let n = scene.objects.len();
            let noun = rng.pick(&["shape", "object"]);
            let noun = if n == 1 {
                noun.to_string()
            } else {
                plural(noun)
            };
            format!("{} {noun}: {list}", number_word(n))
        }
        Template::Background => {
            let how = rng.pick(&["on", "against"]);
            format!("{list} {how} {}", background_phrase(scene, rng))
        }
        Template::InImage => {
            let place = rng.pick(&["in the picture", "in the image", "in this image"]);
            format!("{list} {place}")
        }
        Template::Relation => relation_caption(scene, sizes, one, rng),
    };
    // Half start with a capital, a quarter end with a full stop.
    let mut text = if rng.chance(1, 2) {
        capitalised(&text)
    } else {
        text
    };
    if rng.chance(1, 4) {
        text.push('.');
    }
    text
}

/// The scene's objects grouped by colour, shape (and size), in random order. At most
/// three to a group: "three" is the largest count word captions use.
fn groups(scene: &Scene, sizes: bool, rng: &mut Rng) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for o in &scene.objects {
        let size = sizes.then_some(o.size);
        let same = |g: &&mut Group| {
            g.color == o.color && g.shape == o.shape && g.size == size && g.count < 3
        };
        match groups.iter_mut().find(same) {
            Some(g) => g.count += 1,
            None => groups.push(Group {
                color: o.color,
                shape: o.shape,
                size,
                count: 1,
            }),
        }
    }
    rng.shuffle(&mut groups);
    groups
}

/// "a red circle", "an orange disc", "two large blue boxes", "a single green triangle";
/// `one` is the caption's word for one object: "a", "one" or "a single".
fn phrase(group: &Group, one: &str, rng: &mut Rng) -> String {
    let noun = rng.pick(group.shape.words());
    let noun = if group.count > 1 {
        plural(noun)
    } else {
        noun.to_string()
    };
    let mut words: Vec<&str> = group
        .size
        .map(|s| rng.pick(s.words()))
        .into_iter()
        .collect();
    words.extend([group.color.name(), &noun]);
    let rest = words.join(" ");
    let count = match group.count {
        1 => one,
        n => number_word(n),
    };
    let vowel = rest.starts_with(['a', 'e', 'i', 'o', 'u']);
    let count = if count == "a" && vowel { "an" } else { count };
    format!("{count} {rest}")
}

/// The groups' phrases joined: "a, b and c" (now and then with a serial comma).
fn list(groups: &[Group], one: &str, rng: &mut Rng) -> String {
    let mut phrases: Vec<String> = groups.iter().map(|g| phrase(g, one, rng)).collect();
    let Some(last) = phrases.pop() else {
        return String::new();
    };
    if phrases.is_empty() {
        return last;
    }
    let comma = if phrases.len() > 1 && rng.chance(1, 3) {
        ","
    } else {
        ""
    };
    let join = if phrases.len() == 1 {
        rng.pick(&["and", "and", "with"])
    } else {
        "and"
    };
    format!("{}{comma} {join} {last}", phrases.join(", "))
}

fn number_word(n: usize) -> &'static str {
    match n {
        1 => "one",
        2 => "two",
        3 => "three",
        _ => "several",
    }
}

/// The background in coarse words: only its lightness (gray, dark gray, light gray) and
/// whether it is plain or shaded, never an object colour's name.
fn background_phrase(scene: &Scene, rng: &mut Rng) -> String {
    let bottom = scene.background_bottom.unwrap_or(scene.background);
    let mean = |c: usize| (u32::from(scene.background[c]) + u32::from(bottom[c])) / 2;
    let luma = (299 * mean(0) + 587 * mean(1) + 114 * mean(2)) / 1000;
    let shade = match luma {
        0..110 => "dark gray",
        110..160 => "gray",
        _ => "light gray",
    };
    let options = match scene.background_bottom {
        None => [
            "a plain background".to_string(),
            format!("a {shade} background"),
            format!("a plain {shade} background"),
        ],
        Some(_) => [
            "a shaded background".to_string(),
            format!("a {shade} gradient"),
            format!("a shaded {shade} background"),
        ],
    };
    options[rng.below(options.len())].clone()
}

/// "a red circle above a blue box, which is to the left of a green triangle": the
/// objects in random order, each related to the next.
fn relation_caption(scene: &Scene, sizes: bool, one: &str, rng: &mut Rng) -> String {
    let mut order: Vec<&Object> = scene.objects.iter().collect();
    rng.shuffle(&mut order);
    let name = |o: &Object, rng: &mut Rng| {
        let group = Group {
            color: o.color,
            shape: o.shape,
            size: sizes.then_some(o.size),
            count: 1,
        };
        phrase(&group, one, rng)
    };
    let lead = rng.pick(&["", "", "there is ", "a picture of "]);
    let mut text = format!("{lead}{}", name(order[0], rng));
    for (i, pair) in order.windows(2).enumerate() {
        let which = if i == 0 { "" } else { ", which is" };
        let relation = relation(pair[0], pair[1], rng);
        text += &format!("{which} {relation} {}", name(pair[1], rng));
    }
    text
}

/// Where `a` is as seen from `b`, by their boxes' centres, along the axis on which they
/// differ more (horizontally on a tie); "next to" stands for either side.
fn relation(a: &Object, b: &Object, rng: &mut Rng) -> &'static str {
    let ((ax, ay), (bx, by)) = (a.centre2(), b.centre2());
    if (ax - bx).abs() >= (ay - by).abs() {
        if rng.chance(1, 4) {
            "next to"
        } else if ax < bx {
            "to the left of"
        } else {
            "to the right of"
        }
    } else if ay < by {
        "above"
    } else {
        "below"
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

// ---------------------------------------------------------------------------------------
// Checking captions against scenes.

/// The objects a caption names, one `(colour, shape)` per object in the order named:
/// "two red circles and a blue box" names red circle twice and blue square once.
///
/// A mention is an optional count word (a, an, one, single, two, three or a number), an
/// optional size word, a colour word, another optional size word and a shape word (any
/// synonym, singular or plural). A colour not followed by a shape names nothing, so "on
/// a red background" names no object. `None` when a plural has no count ("red circles"):
/// how many it names is unknown.
pub fn mentions(caption: &str) -> Option<Vec<(Color, Shape)>> {
    let lower = caption.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut named = Vec::new();
    for m in mention_spans(&words) {
        let count = match (m.count, m.plural) {
            (Some(n), _) => n,
            (None, false) => 1,
            (None, true) => return None,
        };
        named.extend(std::iter::repeat_n((m.color, m.shape), count));
    }
    Some(named)
}

/// One mention of objects among a caption's words (see [`mentions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mention {
    pub color: Color,
    pub shape: Shape,
    /// Where its colour word and its shape word are among the words.
    pub color_word: usize,
    pub shape_word: usize,
    /// The count word's value, if there is one.
    pub count: Option<usize>,
    pub plural: bool,
}

/// The mentions of objects among `words` (lower-case), in order.
pub fn mention_spans(words: &[&str]) -> Vec<Mention> {
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let Some(color) = Color::ALL.into_iter().find(|c| c.name() == *word) else {
            continue;
        };
        let at = i
            + 1
            + words[i + 1..]
                .iter()
                .take_while(|w| is_size_word(w))
                .count();
        let Some((shape, plural)) = words.get(at).and_then(|w| shape_word(w)) else {
            continue;
        };
        let start = i - words[..i]
            .iter()
            .rev()
            .take_while(|w| is_size_word(w))
            .count();
        found.push(Mention {
            color,
            shape,
            color_word: i,
            shape_word: at,
            count: start.checked_sub(1).and_then(|j| count_value(words[j])),
            plural,
        });
    }
    found
}

fn is_size_word(word: &str) -> bool {
    [SizeClass::Small, SizeClass::Large]
        .iter()
        .any(|s| s.words().contains(&word))
}

/// The shape a noun names, and whether it is plural.
fn shape_word(word: &str) -> Option<(Shape, bool)> {
    Shape::ALL.into_iter().find_map(|shape| {
        shape.words().iter().find_map(|&w| {
            if word == w {
                Some((shape, false))
            } else {
                (word == plural(w)).then_some((shape, true))
            }
        })
    })
}

fn count_value(word: &str) -> Option<usize> {
    match word {
        "a" | "an" | "one" | "single" => Some(1),
        "two" => Some(2),
        "three" => Some(3),
        // Digits too, but not so many that a caption could ask for a huge tally.
        _ => word.parse().ok().filter(|&n| n < 100),
    }
}

/// Whether the caption names every object of the scene by colour and shape, and nothing
/// else, counts included ([`mentions`] says what a caption names). Sizes and relations
/// are not checked.
pub fn names_scene(caption: &str, scene: &Scene) -> bool {
    let Some(mut named) = mentions(caption) else {
        return false;
    };
    let mut shown: Vec<(Color, Shape)> = scene.objects.iter().map(|o| (o.color, o.shape)).collect();
    named.sort_unstable();
    shown.sort_unstable();
    named == shown
}

/// The share of `(caption, scene)` pairs for which [`names_scene`] holds; 0 for none.
pub fn scene_accuracy<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Scene)>) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for (caption, scene) in pairs {
        total += 1;
        hits += usize::from(names_scene(caption, scene));
    }
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

// ---------------------------------------------------------------------------------------
// Files: PNGs and COCO caption annotation files carrying the scenes.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Images per split.
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub seed: u64,
    /// The images' side in pixels.
    pub size: u32,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            train: 5000,
            val: 500,
            test: 500,
            seed: 0,
            size: 96,
        }
    }
}

impl SynthOptions {
    fn count(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
            Split::Test => self.test,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub images: usize,
    pub captions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    // The causes are part of the messages, not `source`s, so that they print once.
    #[error("{}: {what}: {error}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("{}: cannot write PNG: {error}", path.display())]
    Png {
        path: PathBuf,
        error: image::ImageError,
    },
    #[error("{}: already exists; not overwriting it", path.display())]
    Exists { path: PathBuf },
    #[error("{}: not a synthetic data set's annotation file (an `images` list of {{id, scene}}): {error}", path.display())]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: image id {id} appears twice", path.display())]
    DuplicateId { path: PathBuf, id: i64 },
    #[error("{}: cannot write a synthetic data set there: {msg}", dir.display())]
    Options { dir: PathBuf, msg: String },
}

/// Bumped whenever the same options would give different files.
const FORMAT_VERSION: u32 = 1;
/// Large enough for any use, small enough that a typo cannot fill a disk in one image.
const MAX_SIZE: u32 = 4096;

#[derive(Serialize)]
struct AnnotationFile {
    info: Info,
    images: Vec<ImageEntry>,
    annotations: Vec<Annotation>,
}

#[derive(Serialize)]
struct Info {
    description: &'static str,
    generator: &'static str,
    version: u32,
    seed: u64,
    split: Split,
    size: u32,
}

#[derive(Serialize, Deserialize)]
struct ImageEntry {
    id: i64,
    /// Relative to the data set's folder.
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    scene: Scene,
}

#[derive(Serialize)]
struct Annotation {
    id: i64,
    image_id: i64,
    caption: String,
}

/// Writes `dir/images/{train,val,test}/NNNNNN.png` (numbered from 1) and
/// `dir/{train,val,test}.json`, COCO caption annotation files whose images also carry
/// their scenes. Creates `dir`; refuses to replace an annotation file unless
/// `overwrite`. Image ids are unique across splits (train from 1, val from 1000001, test
/// from 2000001).
pub fn write_dataset(
    dir: &Path,
    opts: &SynthOptions,
    overwrite: bool,
) -> Result<Summary, SynthError> {
    let invalid = |msg: String| SynthError::Options {
        dir: dir.to_path_buf(),
        msg,
    };
    if !(MIN_SIZE..=MAX_SIZE).contains(&opts.size) {
        return Err(invalid(format!(
            "image side {} is outside {MIN_SIZE}..={MAX_SIZE}",
            opts.size
        )));
    }
    for split in Split::ALL {
        if opts.count(split) >= SPLIT_IDS {
            return Err(invalid(format!(
                "a split has at most {} images",
                SPLIT_IDS - 1
            )));
        }
    }
    // All checks before the first write, so a refusal leaves the folder as it was.
    if !overwrite {
        for split in Split::ALL {
            let path = annotation_path(dir, split);
            if path.try_exists().map_err(io(&path, "cannot check"))? {
                return Err(SynthError::Exists { path });
            }
        }
    }
    let mut summary = Summary::default();
    for split in Split::ALL {
        let images = write_split(dir, opts, split)?;
        summary.images += images;
        summary.captions += images * CAPTIONS_PER_IMAGE;
    }
    Ok(summary)
}

fn annotation_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.json", split.name()))
}

/// One split's images, then its annotation file: a split's file exists only once all
/// its images do.
fn write_split(dir: &Path, opts: &SynthOptions, split: Split) -> Result<usize, SynthError> {
    let folder = dir.join("images").join(split.name());
    fs::create_dir_all(&folder).map_err(io(&folder, "cannot create the folder"))?;
    let count = opts.count(split);
    let mut file = AnnotationFile {
        info: Info {
            description: "synthetic shapes captioning data",
            generator: "captioner datasets::synth",
            version: FORMAT_VERSION,
            seed: opts.seed,
            split,
            size: opts.size,
        },
        images: Vec::with_capacity(count),
        annotations: Vec::with_capacity(count * CAPTIONS_PER_IMAGE),
    };
    for index in 0..count {
        let id = split.image_id(index);
        let file_name = format!("images/{}/{:06}.png", split.name(), index + 1);
        let scene = scene(opts.seed, split, index, opts.size);
        write_png(&dir.join(&file_name), &render(&scene, opts.size))?;
        let seed = stream(opts.seed, split, index, Stream::Captions);
        for (k, caption) in captions(&scene, seed).into_iter().enumerate() {
            file.annotations.push(Annotation {
                id: id * 10 + k as i64,
                image_id: id,
                caption,
            });
        }
        file.images.push(ImageEntry {
            id,
            file_name,
            width: opts.size,
            height: opts.size,
            scene,
        });
    }
    // Through a temporary file, so a crash never leaves half an annotation file.
    let path = annotation_path(dir, split);
    let partial = path.with_extension("json.partial");
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(fs::File::create(&partial)?);
        serde_json::to_writer_pretty(&mut out, &file)?;
        out.flush()
    };
    write().map_err(io(&partial, "cannot write"))?;
    fs::rename(&partial, &path).map_err(io(&path, "cannot write"))?;
    Ok(count)
}

fn write_png(path: &Path, image: &RgbImage) -> Result<(), SynthError> {
    let file = fs::File::create(path).map_err(io(path, "cannot create"))?;
    let mut out = BufWriter::new(file);
    PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|error| SynthError::Png {
            path: path.to_path_buf(),
            error,
        })?;
    out.flush().map_err(io(path, "cannot write"))
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SynthError + 'a {
    move |error| SynthError::Io {
        path: path.to_path_buf(),
        what,
        error,
    }
}

#[derive(Deserialize)]
struct SceneFile {
    images: Vec<ImageEntry>,
}

/// The scenes of an annotation file written by [`write_dataset`], by image id.
pub fn load_scenes(path: &Path) -> Result<HashMap<i64, Scene>, SynthError> {
    let text = fs::read_to_string(path).map_err(io(path, "cannot read"))?;
    let file: SceneFile = serde_json::from_str(&text).map_err(|error| SynthError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    let mut scenes = HashMap::with_capacity(file.images.len());
    for ImageEntry { id, scene, .. } in file.images {
        if scenes.insert(id, scene).is_some() {
            return Err(SynthError::DuplicateId {
                path: path.to_path_buf(),
                id,
            });
        }
    }
    Ok(scenes)
}

/// What an image's stream of random numbers is for: each has its own, so that changing
/// the captions, say, never moves a pixel.
#[derive(Clone, Copy)]
enum Stream {
    Scene = 1,
    Captions = 2,
}

/// The seed of image `index` of `split`'s stream `purpose`.
fn stream(seed: u64, split: Split, index: usize, purpose: Stream) -> u64 {
    [split as u64, index as u64, purpose as u64]
        .into_iter()
        .fold(Rng::new(seed).next_u64(), |h, part| {
            Rng::new(h ^ part.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
        })
}
