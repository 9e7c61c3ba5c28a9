//! The documented Ray driver (docs/examples/ray_driver.py) on a local Ray cluster: 8
//! shards over 2 tasks, one task's captioner killed midway, the driver run again, and
//! every sample captioned exactly once with the captions of an uninterrupted run.
//! Skipped, saying so, where no Python with `ray` is found (`CAPTIONER_TEST_PYTHON`, else
//! `python3`; .ci/run installs one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::tmp;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python_with_ray() -> Option<String> {
    let python = std::env::var("CAPTIONER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import ray"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// 8 shards of 48 samples each, the 12 sample images under new keys.
fn make_shards(dir: &Path) -> Vec<PathBuf> {
    let images: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("datasets/sample/images/test"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    (0..8)
        .map(|s| {
            let mut b = tar::Builder::new(Vec::new());
            for i in 0..48 {
                let data = std::fs::read(&images[(s + i) % images.len()]).unwrap();
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, format!("{s:02}{i:04}.png"), &data[..])
                    .unwrap();
            }
            let path = dir.join(format!("shard-{s:02}.tar"));
            std::fs::write(&path, b.into_inner().unwrap()).unwrap();
            path
        })
        .collect()
}

fn driver(python: &str, shards: &Path, out: &Path) -> Command {
    let mut c = Command::new(python);
    c.arg(root().join("docs/examples/ray_driver.py"))
        .args(["--captioner", env!("CARGO_BIN_EXE_captioner")])
        .args(["--out", &out.display().to_string(), "--groups", "2"])
        .arg(shards.display().to_string())
        .args(["--", "--model"])
        .arg(root().join("weights/shapes-tiny"))
        .args(["--threads", "1", "--batch", "4"])
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The captioner processes writing into `out`.
fn captioners_of(out: &Path) -> Vec<u32> {
    let want = out.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.contains(&&b"shards"[..]) && args.contains(&want.as_bytes())
            })
        })
        .collect()
}

fn markers(out: &Path) -> usize {
    std::fs::read_dir(out).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with("_stats.json"))
        })
        .count()
    })
}

#[test]
fn ray_driver_resumes_a_killed_task_to_the_same_captions() {
    let Some(python) = python_with_ray() else {
        eprintln!("skipped: no Python with `ray` (set CAPTIONER_TEST_PYTHON, or pip install ray)");
        return;
    };
    let dir = tmp("ray");
    let shards = dir.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let inputs = make_shards(&shards);

    let whole = dir.join("whole");
    let r = driver(&python, &shards, &whole).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(markers(&whole), 8);

    // Kill one task's captioner once the first shard is done.
    let out = dir.join("killed");
    let child = driver(&python, &shards, &out).spawn().unwrap();
    let start = Instant::now();
    while markers(&out) == 0 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let victims = captioners_of(&out);
    assert!(
        !victims.is_empty(),
        "no captioner running after the first marker"
    );
    let killed = Command::new("kill")
        .args(["-9", &victims[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let first = child.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(2),
        "the driver should report the killed group: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let done_before = markers(&out);
    assert!(
        done_before < 8,
        "all 8 shards finished although a task was killed"
    );

    let again = driver(&python, &shards, &out).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let stdout = String::from_utf8(again.stdout).unwrap();
    let redone = stdout.matches("\"status\": \"captioned\"").count();
    assert_eq!(redone, 8 - done_before, "{stdout}");
    for shard in &inputs {
        let name = shard.file_name().unwrap();
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(whole.join(name)).unwrap(),
            "{name:?} differs from the uninterrupted run"
        );
    }
    let partial = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(partial, 0, "a partial output was left behind");
}
