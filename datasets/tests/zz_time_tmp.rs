use datasets::synth::*;
#[test]
fn time_2000() {
    let dir = std::env::temp_dir().join(format!("synth-time-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = SynthOptions {
        train: 1800,
        val: 100,
        test: 100,
        seed: 0,
        size: 96,
    };
    let t = std::time::Instant::now();
    let s = write_dataset(&dir, &opts, false).unwrap();
    println!("TIME {:?} for {:?}", t.elapsed(), s);
    let out = std::process::Command::new("du")
        .arg("-sh")
        .arg(&dir)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let out = std::process::Command::new("ls")
        .arg("-la")
        .arg(&dir)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}
