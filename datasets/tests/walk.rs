//! Walking folders for images: order, extensions, hidden entries, links and loops, and
//! finding COCO image ids by file name.

use std::path::Path;

use datasets::{ImageIds, ImageWalk};
use serde_json::json;

// The integration tests' shared helpers live with the CLI's tests.
#[path = "../../captioner-cli/tests/common/mod.rs"]
mod common;
use common::tmp;

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
}

/// The relative paths of what a walk finds, its errors left out.
fn relatives(walk: ImageWalk) -> Vec<String> {
    walk.filter_map(|f| f.ok())
        .map(|f| f.relative.display().to_string())
        .collect()
}

#[cfg(unix)]
#[test]
fn folders_are_walked_sorted_depth_first_and_links_are_followed_once() {
    let root = tmp("tree");
    for name in [
        "b.png",
        "a.JPG",
        "10.jpeg",
        "9.webp",
        "notes.txt",
        ".hidden.png",
        "c.Tif",
        "sub/z.gif",
        "sub/deeper/y.bmp",
        "sub/x.TIFF",
        ".cache/w.png",
        "tmp.png.partial",
    ] {
        touch(&root.join(name));
    }
    // A loop back to the root, and a second way into `sub`.
    std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
    std::os::unix::fs::symlink("missing.png", root.join("dangling.png")).unwrap();

    let walk = ImageWalk::new([&root]);
    let found: Vec<_> = walk.collect();
    let errors: Vec<_> = found.iter().filter_map(|f| f.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].path.ends_with("dangling.png"));
    let names = relatives(ImageWalk::new([&root]));
    // Byte order of names; `link` comes before `sub`, so `sub`'s files are found through
    // it, and `sub` itself (the same folder) is not entered again; `up` loops to the root.
    assert_eq!(
        names,
        [
            "10.jpeg",
            "9.webp",
            "a.JPG",
            "b.png",
            "c.Tif",
            "link/deeper/y.bmp",
            "link/x.TIFF",
            "link/z.gif",
        ]
    );
    for f in found.iter().filter_map(|f| f.as_ref().ok()) {
        assert_eq!(f.path, root.join(&f.relative));
    }
    // Two walks agree.
    assert_eq!(relatives(ImageWalk::new([&root])), names);
}

#[test]
fn named_files_are_yielded_whatever_their_extension_and_missing_ones_are_errors() {
    let root = tmp("named");
    touch(&root.join("photo.data"));
    touch(&root.join("dir/one.png"));
    let walk = ImageWalk::new([
        root.join("photo.data"),
        root.join("nothing-here.png"),
        root.join("dir"),
        root.join("dir"),
    ]);
    let found: Vec<_> = walk.collect();
    assert_eq!(
        found.len(),
        3,
        "a folder named twice is walked once: {found:?}"
    );
    let first = found[0].as_ref().unwrap();
    assert_eq!(first.path, root.join("photo.data"));
    assert_eq!(first.relative, root.join("photo.data"));
    let err = found[1].as_ref().unwrap_err();
    assert!(err.to_string().contains("nothing-here.png"), "{err}");
    assert_eq!(found[2].as_ref().unwrap().relative, Path::new("one.png"));
}

#[test]
fn coco_image_ids_are_found_by_relative_path_or_file_name() {
    let ids = ImageIds::new([
        ("val2014/COCO_1.jpg".to_string(), json!(1)),
        ("COCO_2.jpg".to_string(), json!("two")),
        ("a/same.jpg".to_string(), json!(3)),
        ("b/same.jpg".to_string(), json!(4)),
    ]);
    assert_eq!(ids.len(), 4);
    assert_eq!(ids.lookup(Path::new("val2014/COCO_1.jpg")), Ok(&json!(1)));
    assert_eq!(ids.lookup(Path::new("elsewhere/COCO_1.jpg")), Ok(&json!(1)));
    assert_eq!(ids.lookup(Path::new("./COCO_2.jpg")), Ok(&json!("two")));
    assert_eq!(ids.lookup(Path::new("b/same.jpg")), Ok(&json!(4)));
    assert!(matches!(
        ids.lookup(Path::new("c/same.jpg")),
        Err(datasets::coco::LookupError::Ambiguous(_))
    ));
    let err = ids.lookup(Path::new("x/unknown.jpg")).unwrap_err();
    assert!(err.to_string().contains("unknown.jpg"), "{err}");
}

#[test]
fn coco_annotation_files_are_read_and_bad_ones_named() {
    let dir = tmp("coco");
    let ann = dir.join("ann.json");
    std::fs::write(
        &ann,
        r#"{"images": [{"id": 5, "file_name": "x.png", "width": 3}], "annotations": []}"#,
    )
    .unwrap();
    let ids = ImageIds::load(&ann).unwrap();
    assert_eq!(ids.lookup(Path::new("x.png")), Ok(&json!(5)));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"annotations": []}"#).unwrap();
    let err = ImageIds::load(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
}
