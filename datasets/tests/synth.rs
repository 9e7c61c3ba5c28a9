//! The synthetic shapes data set: determinism, files, pixels against the scene's
//! geometry, layout rules, and captions against `names_scene`. Checks are stated from the
//! definitions (shapes, margins, palette, noise), not from recorded outputs.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use datasets::synth::{
    captions, load_scenes, mentions, names_scene, render, scene, scene_accuracy, write_dataset,
    Color, Object, Scene, Shape, SizeClass, Split, SynthError, SynthOptions, CAPTIONS_PER_IMAGE,
    MIN_SIZE, NOISE,
};
use datasets::References;

// The integration tests' shared helpers live with the CLI's tests.
#[path = "../../captioner-cli/tests/common/mod.rs"]
mod common;
use common::tmp;

fn small_options(seed: u64) -> SynthOptions {
    SynthOptions {
        train: 12,
        val: 4,
        test: 3,
        seed,
        size: 64,
    }
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Scenes from many seeds and indices, all splits.
fn many_scenes(n: usize, size: u32) -> Vec<Scene> {
    (0..n)
        .map(|i| scene(i as u64 / 7, Split::ALL[i % 3], i, size))
        .collect()
}

fn distance(a: [u8; 3], b: [u8; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Two colours any noisy pixel of one is closer to than to the other are at least this
/// far apart: twice the largest noise vector.
fn unambiguous() -> f64 {
    2.0 * f64::from(NOISE) * 3f64.sqrt()
}

fn object(shape: Shape, color: Color, bbox: [u32; 4]) -> Object {
    Object {
        shape,
        color,
        size: SizeClass::Small,
        bbox,
    }
}

fn scene_of(objects: Vec<Object>) -> Scene {
    Scene {
        background: [128, 128, 128],
        background_bottom: None,
        noise_seed: 7,
        objects,
    }
}

// ---------------------------------------------------------------------------------------
// Files.

#[test]
fn same_options_give_byte_identical_files_and_other_seeds_differ() {
    let (a, b, c) = (tmp("synth-det-a"), tmp("synth-det-b"), tmp("synth-det-c"));
    write_dataset(&a, &small_options(3), false).unwrap();
    write_dataset(&b, &small_options(3), false).unwrap();
    write_dataset(&c, &small_options(4), false).unwrap();
    let listed = files(&a);
    assert_eq!(listed, files(&b));
    for file in &listed {
        let bytes = std::fs::read(a.join(file)).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(b.join(file)).unwrap(),
            "{}",
            file.display()
        );
    }
    assert_eq!(listed, files(&c), "the layout does not depend on the seed");
    let differing = listed
        .iter()
        .filter(|f| std::fs::read(a.join(f)).unwrap() != std::fs::read(c.join(f)).unwrap())
        .count();
    assert_eq!(differing, listed.len(), "every file changes with the seed");
}

#[test]
fn files_counts_ids_and_images_match_the_scenes() {
    let dir = tmp("synth-layout");
    let opts = small_options(11);
    let summary = write_dataset(&dir.join("new/set"), &opts, false).unwrap();
    let dir = dir.join("new/set");
    assert_eq!(summary.images, 12 + 4 + 3);
    assert_eq!(summary.captions, summary.images * CAPTIONS_PER_IMAGE);

    let mut expected: Vec<PathBuf> = ["train.json", "val.json", "test.json"]
        .map(PathBuf::from)
        .to_vec();
    let mut ids = BTreeSet::new();
    for (split, count) in [(Split::Train, 12), (Split::Val, 4), (Split::Test, 3)] {
        let name = split.name();
        let path = dir.join(format!("{name}.json"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["info"]["split"], name);
        assert_eq!(json["info"]["seed"], 11);
        let images = json["images"].as_array().unwrap();
        assert_eq!(images.len(), count);
        assert_eq!(json["annotations"].as_array().unwrap().len(), count * 5);
        // The project's own COCO reader takes the file: five captions per image.
        let refs = References::load(&path).unwrap();
        assert!(refs.images.iter().all(|i| i.captions.len() == 5));
        let scenes = load_scenes(&path).unwrap();
        for (index, image) in images.iter().enumerate() {
            let file_name = format!("images/{name}/{:06}.png", index + 1);
            assert_eq!(image["file_name"], file_name.as_str());
            assert_eq!(
                (image["width"].as_u64(), image["height"].as_u64()),
                (Some(64), Some(64))
            );
            let id = image["id"].as_i64().unwrap();
            assert!(ids.insert(id), "image id {id} is used twice");
            expected.push(PathBuf::from(&file_name));

            // The scene is the one scene() makes, and the PNG is its rendering.
            let scene = &scenes[&id];
            assert_eq!(*scene, datasets::synth::scene(11, split, index, 64));
            let decoded = image::open(dir.join(&file_name)).unwrap().to_rgb8();
            assert_eq!(decoded.dimensions(), (64, 64));
            assert!(decoded == render(scene, 64), "{file_name} is not its scene");
            let captions = &refs
                .get(&datasets::ImageId::from_json(&image["id"]).unwrap())
                .unwrap()
                .captions;
            assert!(
                captions.iter().all(|c| names_scene(c, scene)),
                "{captions:?}"
            );
        }
    }
    expected.sort();
    assert_eq!(files(&dir), expected);
    let annotation_ids: BTreeSet<i64> = Split::ALL
        .iter()
        .flat_map(|s| {
            let path = dir.join(format!("{}.json", s.name()));
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            json["annotations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        annotation_ids.len(),
        summary.captions,
        "annotation ids are unique"
    );
}

#[test]
fn refuses_to_overwrite_unless_asked_and_rejects_bad_options() {
    let dir = tmp("synth-overwrite");
    let mut opts = small_options(1);
    opts.train = 2;
    write_dataset(&dir, &opts, false).unwrap();
    let before = std::fs::read(dir.join("train.json")).unwrap();
    let err = write_dataset(&dir, &small_options(2), false).unwrap_err();
    assert!(matches!(err, SynthError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("train.json"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("train.json")).unwrap(),
        before,
        "untouched"
    );
    // Only one split's file left behind is enough to refuse.
    std::fs::remove_file(dir.join("train.json")).unwrap();
    std::fs::remove_file(dir.join("val.json")).unwrap();
    let err = write_dataset(&dir, &opts, false).unwrap_err();
    assert!(err.to_string().contains("test.json"), "{err}");
    write_dataset(&dir, &opts, true).unwrap();
    assert_eq!(std::fs::read(dir.join("train.json")).unwrap(), before);

    let mut tiny = small_options(1);
    tiny.size = MIN_SIZE - 1;
    let err = write_dataset(&dir.join("tiny"), &tiny, false).unwrap_err();
    assert!(matches!(err, SynthError::Options { .. }), "{err}");
    assert!(err.to_string().contains("tiny"), "{err}");
}

#[test]
fn load_scenes_round_trips_and_names_bad_files() {
    let dir = tmp("synth-load");
    write_dataset(&dir, &small_options(5), false).unwrap();
    for split in Split::ALL {
        let scenes = load_scenes(&dir.join(format!("{}.json", split.name()))).unwrap();
        let count = [12, 4, 3][split as usize];
        assert_eq!(scenes.len(), count);
        for index in 0..count {
            let id = split.image_id(index);
            assert_eq!(scenes[&id], scene(5, split, index, 64));
            // And through JSON on its own.
            let text = serde_json::to_string(&scenes[&id]).unwrap();
            assert_eq!(serde_json::from_str::<Scene>(&text).unwrap(), scenes[&id]);
        }
    }
    let missing = dir.join("missing.json");
    let err = load_scenes(&missing).unwrap_err();
    assert!(matches!(err, SynthError::Io { .. }) && err.to_string().contains("missing.json"));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"images": [{"id": 1}]}"#).unwrap();
    let err = load_scenes(&bad).unwrap_err();
    assert!(matches!(err, SynthError::Json { .. }) && err.to_string().contains("bad.json"));
}

// ---------------------------------------------------------------------------------------
// Scenes and pixels.

#[test]
fn scenes_are_deterministic_and_depend_on_seed_split_and_index() {
    assert_eq!(scene(9, Split::Val, 4, 96), scene(9, Split::Val, 4, 96));
    let base: Vec<Scene> = (0..50).map(|i| scene(9, Split::Train, i, 96)).collect();
    let same = |other: Vec<Scene>| base.iter().zip(&other).filter(|(a, b)| a == b).count();
    assert_eq!(
        same((0..50).map(|i| scene(10, Split::Train, i, 96)).collect()),
        0
    );
    assert_eq!(
        same((0..50).map(|i| scene(9, Split::Test, i, 96)).collect()),
        0
    );
    assert_eq!(
        same((1..51).map(|i| scene(9, Split::Train, i, 96)).collect()),
        0
    );
}

#[test]
fn objects_fit_the_image_apart_and_in_their_size_class() {
    let size = 96;
    let scenes = many_scenes(3000, size);
    let mut by_count = [0usize; 4];
    let mut repeated_kind = 0;
    let mut gradients = 0;
    for s in &scenes {
        by_count[s.objects.len()] += 1;
        gradients += usize::from(s.background_bottom.is_some());
        for (i, o) in s.objects.iter().enumerate() {
            let [x, y, w, h] = o.bbox;
            assert_eq!(w, h, "boxes are square");
            assert!(
                x >= 2 && y >= 2 && x + w + 2 <= size && y + h + 2 <= size,
                "{o:?}"
            );
            let percent = f64::from(w) / f64::from(size) * 100.0;
            let (lo, hi) = match o.size {
                SizeClass::Small => (18.0, 26.0),
                SizeClass::Large => (30.0, 40.0),
            };
            assert!((lo..=hi).contains(&percent), "{o:?}: {percent}%");
            for p in &s.objects[i + 1..] {
                let [px, py, pw, ph] = p.bbox;
                let gap_x = (px as i64 - (x + w) as i64).max(x as i64 - (px + pw) as i64);
                let gap_y = (py as i64 - (y + h) as i64).max(y as i64 - (py + ph) as i64);
                assert!(
                    gap_x.max(gap_y) >= 2,
                    "{o:?} and {p:?} are closer than 2 px"
                );
                repeated_kind += usize::from(o.color == p.color && o.shape == p.shape);
            }
        }
        // Muted: channels stay close together.
        for bg in std::iter::once(s.background).chain(s.background_bottom) {
            let (max, min) = (bg.iter().max().unwrap(), bg.iter().min().unwrap());
            assert!(max - min <= 32, "{bg:?} is not muted");
        }
    }
    assert_eq!(by_count[0], 0);
    for (n, &count) in by_count.iter().enumerate().skip(1) {
        let share = count as f64 / scenes.len() as f64;
        assert!(
            (0.28..0.39).contains(&share),
            "{n} objects in {share} of scenes"
        );
    }
    assert!(repeated_kind > 20, "repeats happen: {repeated_kind}");
    assert!((0.3..0.5).contains(&(gradients as f64 / scenes.len() as f64)));
    let all: Vec<&Object> = scenes.iter().flat_map(|s| &s.objects).collect();
    for shape in Shape::ALL {
        assert!(all.iter().any(|o| o.shape == shape));
    }
    for color in Color::ALL {
        assert!(all.iter().any(|o| o.color == color));
    }
    for class in [SizeClass::Small, SizeClass::Large] {
        assert!(all.iter().any(|o| o.size == class));
    }
}

#[test]
fn palette_is_unambiguous_under_noise() {
    for (i, a) in Color::ALL.iter().enumerate() {
        for b in &Color::ALL[i + 1..] {
            assert!(
                distance(a.rgb(), b.rgb()) > unambiguous(),
                "{a:?} and {b:?}"
            );
        }
    }
    for s in many_scenes(2000, 64) {
        for bg in std::iter::once(s.background).chain(s.background_bottom) {
            for c in Color::ALL {
                assert!(
                    distance(bg, c.rgb()) > unambiguous() + 20.0,
                    "{bg:?} and {c:?}"
                );
            }
        }
    }
}

#[test]
fn shapes_fill_their_definitions() {
    // A box far from the image's edges, with even and odd sides.
    for side in [20u32, 21, 33] {
        let bbox = [5, 7, side, side];
        let (cx, cy) = (5.0 + f64::from(side) / 2.0, 7.0 + f64::from(side) / 2.0);
        let r = f64::from(side) / 2.0;
        for shape in Shape::ALL {
            let o = object(shape, Color::Red, bbox);
            let mut area = 0usize;
            for y in 0..60 {
                for x in 0..60 {
                    let (px, py) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
                    let in_box = x >= 5 && x < 5 + side && y >= 7 && y < 7 + side;
                    let expected = in_box
                        && match shape {
                            Shape::Square => true,
                            Shape::Circle => (px - cx).powi(2) + (py - cy).powi(2) <= r * r,
                            Shape::Diamond => (px - cx).abs() + (py - cy).abs() <= r,
                            // Apex at the top middle, base on the bottom edge.
                            Shape::Triangle => (px - cx).abs() <= (py - 7.0) / 2.0,
                        };
                    assert_eq!(o.contains(x, y), expected, "{shape:?} {side} at {x},{y}");
                    area += usize::from(expected);
                }
            }
            let share = area as f64 / f64::from(side * side);
            let ideal = match shape {
                Shape::Square => 1.0,
                Shape::Circle => std::f64::consts::FRAC_PI_4,
                Shape::Diamond | Shape::Triangle => 0.5,
            };
            assert!((share - ideal).abs() < 0.06, "{shape:?} {side}: {share}");
        }
    }
}

#[test]
fn pixels_show_the_scene_within_the_noise() {
    let size = 96;
    for s in many_scenes(300, size) {
        let image = render(&s, size);
        assert_eq!(image.dimensions(), (size, size));
        for (x, y, pixel) in image.enumerate_pixels() {
            let expected = s
                .objects
                .iter()
                .find(|o| o.contains(x, y))
                .map_or(s.background_at(y, size), |o| o.color.rgb());
            for c in 0..3 {
                let diff = (i32::from(pixel[c]) - i32::from(expected[c])).abs();
                assert!(diff <= i32::from(NOISE), "{s:?} at {x},{y}: {pixel:?}");
            }
        }
        for o in &s.objects {
            let [x, y, w, h] = o.bbox;
            let (cx, cy) = (x + w / 2, y + h / 2);
            let centre = image.get_pixel(cx, cy).0;
            // Nearest to its own colour among the palette and the background.
            let nearest = Color::ALL
                .into_iter()
                .min_by(|a, b| distance(centre, a.rgb()).total_cmp(&distance(centre, b.rgb())))
                .unwrap();
            assert_eq!(nearest, o.color);
            let background = s.background_at(cy, size);
            assert!(distance(centre, background) > distance(centre, o.color.rgb()) + 40.0);
        }
    }
    // A gradient runs from its top colour to its bottom one.
    let mut s = scene_of(vec![]);
    s.background = [60, 100, 140];
    s.background_bottom = Some([140, 100, 60]);
    assert_eq!(s.background_at(0, 64), [60, 100, 140]);
    assert_eq!(s.background_at(63, 64), [140, 100, 60]);
    assert_eq!(s.background_at(31, 64)[1], 100);
}

// ---------------------------------------------------------------------------------------
// Captions.

#[test]
fn every_generated_caption_names_its_scene() {
    let scenes = many_scenes(500, 96);
    let mut pairs = Vec::new();
    for (i, s) in scenes.iter().enumerate() {
        let caps = captions(s, i as u64 * 31 + 1);
        assert_eq!(caps.len(), CAPTIONS_PER_IMAGE);
        let distinct: BTreeSet<&String> = caps.iter().collect();
        assert_eq!(distinct.len(), CAPTIONS_PER_IMAGE, "{caps:?}");
        for c in &caps {
            assert!(names_scene(c, s), "{c:?} does not name {s:?}");
            let first = c.chars().next().unwrap();
            assert!(first.is_lowercase() || first.is_uppercase(), "{c:?}");
            assert_eq!(c.trim(), c);
            assert!(!c.contains("  "), "{c:?}");
        }
        pairs.extend(caps.into_iter().map(|c| (c, s)));
    }
    assert_eq!(
        scene_accuracy(pairs.iter().map(|(c, s)| (c.as_str(), *s))),
        1.0
    );
    assert_eq!(captions(&scenes[0], 5), captions(&scenes[0], 5));
    assert_ne!(captions(&scenes[0], 5), captions(&scenes[0], 6));
}

#[test]
fn captions_stop_naming_a_scene_that_changes() {
    for (i, s) in many_scenes(300, 96).iter().enumerate() {
        let caps = captions(s, i as u64);
        let mut extra = s.clone();
        extra
            .objects
            .push(object(Shape::Circle, Color::Red, [0, 0, 10, 10]));
        let mut missing = s.clone();
        missing.objects.pop();
        let mut recoloured = s.clone();
        let o = &mut recoloured.objects[0];
        o.color = Color::ALL[(Color::ALL.iter().position(|c| *c == o.color).unwrap() + 1) % 6];
        let mut reshaped = s.clone();
        let o = &mut reshaped.objects[0];
        o.shape = Shape::ALL[(Shape::ALL.iter().position(|c| *c == o.shape).unwrap() + 1) % 4];
        for c in &caps {
            for changed in [&extra, &missing, &recoloured, &reshaped] {
                assert!(!names_scene(c, changed), "{c:?} names {changed:?}");
            }
        }
    }
}

#[test]
fn names_scene_counts_colours_and_shapes() {
    let s = scene_of(vec![
        object(Shape::Circle, Color::Red, [2, 2, 10, 10]),
        object(Shape::Square, Color::Blue, [20, 2, 10, 10]),
        object(Shape::Circle, Color::Red, [2, 20, 10, 10]),
    ]);
    for good in [
        "two red circles and a blue square",
        "A blue box to the left of two red discs.",
        "a large red circle, a small red circle and a blue square on a red background",
        "Three shapes: 2 red circles, one big blue box",
        "there is a single blue square next to two little red circles",
    ] {
        assert!(names_scene(good, &s), "{good:?}");
    }
    for bad in [
        "two green circles and a blue square", // wrong colour
        "two red circles",                     // missing object
        "two red circles, a blue square and a green triangle", // extra object
        "a red circle and a blue square",      // wrong count
        "three red circles and a blue square", // wrong count
        "red circles and a blue square",       // plural without a count
        "two red triangles and a blue square", // wrong shape
        "two red circles and a blue",          // colour without a shape
        "",
    ] {
        assert!(!names_scene(bad, &s), "{bad:?}");
    }
    assert_eq!(
        mentions("a red disc above an orange rhombus on a blue background"),
        Some(vec![
            (Color::Red, Shape::Circle),
            (Color::Orange, Shape::Diamond)
        ])
    );
    let empty = scene_of(vec![]);
    assert!(names_scene("a plain gray background", &empty));
}

#[test]
fn scene_accuracy_is_the_share_named() {
    let s = scene_of(vec![object(Shape::Triangle, Color::Green, [2, 2, 10, 10])]);
    let pairs = [
        ("a green triangle", &s),
        ("a red triangle", &s),
        ("There is a green triangle.", &s),
        ("two green triangles", &s),
    ];
    assert_eq!(scene_accuracy(pairs), 0.5);
    assert_eq!(scene_accuracy(std::iter::empty()), 0.0);
}

const RELATIONS: [&str; 5] = [
    "to the left of",
    "to the right of",
    "above",
    "below",
    "next to",
];

#[test]
fn relations_match_the_boxes() {
    let mut checked = 0;
    for (i, s) in many_scenes(600, 96).iter().enumerate() {
        let kinds: BTreeSet<(Color, Shape)> =
            s.objects.iter().map(|o| (o.color, o.shape)).collect();
        if s.objects.len() < 2 || kinds.len() < s.objects.len() {
            continue; // Which object a phrase names is only clear when kinds differ.
        }
        let find = |kind: (Color, Shape)| {
            s.objects
                .iter()
                .find(|o| (o.color, o.shape) == kind)
                .unwrap()
        };
        for c in captions(s, i as u64) {
            let lower = c.to_lowercase();
            let mut found: Vec<(usize, &str)> = RELATIONS
                .iter()
                .flat_map(|r| {
                    lower
                        .match_indices(r)
                        .map(|(at, _)| (at, *r))
                        .collect::<Vec<_>>()
                })
                .collect();
            if found.is_empty() {
                continue;
            }
            found.sort();
            let named = mentions(&c).unwrap();
            assert_eq!(found.len(), named.len() - 1, "{c:?}");
            // Each relation places the object named before it against the one after.
            for (k, (_, relation)) in found.iter().enumerate() {
                let (a, b) = (find(named[k]), find(named[k + 1]));
                let centre = |o: &Object| {
                    let [x, y, w, h] = o.bbox.map(i64::from);
                    (2 * x + w, 2 * y + h)
                };
                let ((ax, ay), (bx, by)) = (centre(a), centre(b));
                let horizontal = (ax - bx).abs() >= (ay - by).abs();
                let holds = match *relation {
                    "to the left of" => horizontal && ax < bx,
                    "to the right of" => horizontal && ax > bx,
                    "next to" => horizontal,
                    "above" => !horizontal && ay < by,
                    _ => !horizontal && ay > by,
                };
                assert!(holds, "{c:?}: {relation} does not hold in {s:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

#[test]
fn captions_are_varied() {
    let scenes = many_scenes(200, 96);
    let all: Vec<String> = scenes
        .iter()
        .enumerate()
        .flat_map(|(i, s)| captions(s, i as u64))
        .collect();
    let lower: Vec<String> = all.iter().map(|c| c.to_lowercase()).collect();
    let has = |needle: &str| lower.iter().any(|c| c.contains(needle));
    let words = [
        "circle",
        "disc",
        "square",
        "box",
        "triangle",
        "diamond",
        "rhombus",
        "circles",
        "boxes",
        "small",
        "little",
        "large",
        "big",
        "two",
        "a single",
        "an ",
        "there is",
        "there are",
        "picture of",
        "image of",
        "shapes:",
        "objects:",
        "one shape:",
        "background",
        "plain",
        "gradient",
        "shaded",
        "dark gray",
        "light gray",
        "which is",
        " with ",
    ];
    for needle in words.iter().chain(&RELATIONS) {
        assert!(has(needle), "no caption has {needle:?}");
    }
    for color in Color::ALL {
        assert!(has(color.name()));
    }
    assert!(all.iter().any(|c| c.starts_with(char::is_uppercase)));
    assert!(all.iter().any(|c| c.starts_with(char::is_lowercase)));
    assert!(all.iter().any(|c| c.ends_with('.')));

    // Templates, with the named things blanked out: many distinct sentence forms.
    let mut vocabulary: HashMap<String, &str> = HashMap::new();
    for color in Color::ALL {
        vocabulary.insert(color.name().into(), "C");
    }
    for shape in Shape::ALL {
        for w in shape.words() {
            vocabulary.insert(w.to_string(), "S");
            vocabulary.insert(format!("{w}s"), "S");
            vocabulary.insert(format!("{w}es"), "S");
        }
    }
    for w in ["small", "little", "large", "big"] {
        vocabulary.insert(w.into(), "Z");
    }
    let forms: BTreeSet<String> = lower
        .iter()
        .map(|c| {
            c.split(|ch: char| !ch.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| vocabulary.get(w).copied().unwrap_or(w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(forms.len() > 150, "only {} sentence forms", forms.len());
}

/// The sample committed under datasets/sample is what `captioner dataset synth --out
/// datasets/sample --train 0 --val 0 --test 12 --seed 7` writes (its empty train and
/// val files left out).
#[test]
fn committed_sample_is_reproducible() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample");
    let dir = common::tmp("synth-sample");
    let opts = datasets::synth::SynthOptions {
        train: 0,
        val: 0,
        test: 12,
        seed: 7,
        ..Default::default()
    };
    datasets::synth::write_dataset(&dir, &opts, false).unwrap();
    assert_eq!(
        std::fs::read(dir.join("test.json")).unwrap(),
        std::fs::read(sample.join("test.json")).unwrap()
    );
    for i in 1..=12 {
        let name = format!("images/test/{i:06}.png");
        assert_eq!(
            std::fs::read(dir.join(&name)).unwrap(),
            std::fs::read(sample.join(&name)).unwrap(),
            "{name}"
        );
    }
}
