//! The EWT loader refuses wrong, truncated and inconsistent files with a clear message.

use effnet::Ewt;

/// A tiny but complete network: one block (expand 1, 3x3, 2 -> 2 channels), head 2 -> 3, 4 classes.
fn file(mutate: &dyn Fn(&mut Vec<String>)) -> Vec<u8> {
    let tensors: Vec<(&str, Vec<usize>)> = vec![
        ("stem.w", vec![3, 3, 3, 2]),
        ("stem.b", vec![2]),
        ("blocks.0.dw.w", vec![3, 3, 2]),
        ("blocks.0.dw.b", vec![2]),
        ("blocks.0.project.w", vec![2, 2]),
        ("blocks.0.project.b", vec![2]),
        ("head.w", vec![2, 3]),
        ("head.b", vec![3]),
        ("fc.w", vec![3, 4]),
        ("fc.b", vec![4]),
    ];
    let data_start = 4096;
    let mut lines = vec![
        "meta id tiny".to_string(),
        "meta version 7".to_string(),
        "meta classes 4".to_string(),
        "block 0 3 1 1 2 2".to_string(),
    ];
    let mut off = data_start;
    let mut end = off;
    for (name, shape) in &tensors {
        let n: usize = shape.iter().product();
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        lines.push(format!("tensor {} f32 {} {} {}", name, off, n * 4, dims.join("x")));
        end = off + n * 4;
        off += (n * 4 + 63) / 64 * 64;
    }
    mutate(&mut lines);
    let header = lines.join("\n") + "\n";
    let mut out = b"EWT1".to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.resize(end, 0);
    for (i, chunk) in out[data_start..].chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&((i % 7) as f32 * 0.1).to_le_bytes());
    }
    out
}

fn err(bytes: Vec<u8>) -> String {
    Ewt::parse(bytes).err().expect("should be refused").to_string()
}

#[test]
fn a_good_file_loads_and_runs() {
    let ewt = Ewt::parse(file(&|_| {})).unwrap();
    assert_eq!(ewt.meta("version"), Some("7"));
    let mut net = effnet::Network::new(&ewt, 9, 8).unwrap();
    let logits = net.forward(&vec![0.5; 9 * 8 * 3]).unwrap();
    assert_eq!(logits.len(), 4);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert!(net.forward(&[0.0; 5]).is_err());
}

/// Each activation buffer is sized for its role from the layer shapes: on a 9 x 8 input the stem gives 5 x 4
/// pixels, so block input/output 5*4*2, depthwise output 5*4*2, and the expanded buffer (no expand conv here)
/// the largest of the stem's im2col rows (5*4*28) and the head's output (5*4*3).
#[test]
fn activation_buffers_are_sized_per_role() {
    let ewt = Ewt::parse(file(&|_| {})).unwrap();
    let net = effnet::Network::new(&ewt, 9, 8).unwrap();
    assert_eq!(net.act_sizes(), effnet::net::ActSizes { x: 40, e: 560, d: 40 });
}

#[test]
fn wrong_files_are_refused() {
    assert!(err(b"GIF89a...".to_vec()).contains("not an EWT"));
    assert!(err(vec![]).contains("too short"));
    let mut t = file(&|_| {});
    t.truncate(t.len() - 10);
    assert!(err(t).contains("truncated"));
    let mut t = file(&|_| {});
    t.truncate(100);
    assert!(err(t).contains("truncated"));
    assert!(err(file(&|l| l.retain(|x| !x.contains("fc.b")))).contains("lacks tensor fc.b"));
    assert!(err(file(&|l| l[3] = "block 0 5 1 1 2 2".to_string())).contains("blocks.0.dw.w"));
    assert!(err(file(&|l| l[2] = "meta classes 5".to_string())).contains("classes"));
    assert!(err(file(&|l| l[3] = "block 0 3 3 1 2 2".to_string())).contains("stride"));
    assert!(err(file(&|l| l.retain(|x| !x.starts_with("block")))).contains("block table"));
}

#[test]
fn a_file_streams_like_memory_and_truncation_is_refused() {
    let bytes = file(&|_| {});
    let dir = std::env::temp_dir().join(format!("effnet-ewt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.ewt");
    std::fs::write(&path, &bytes).unwrap();
    let mem = Ewt::parse(bytes.clone()).unwrap();
    let disk = Ewt::from_file(std::fs::File::open(&path).unwrap()).unwrap();
    let input = vec![0.25; 9 * 8 * 3];
    let a = effnet::Network::new(&mem, 9, 8).unwrap().forward(&input).unwrap().to_vec();
    let b = effnet::Network::new(&disk, 9, 8).unwrap().forward(&input).unwrap().to_vec();
    assert_eq!(a, b);
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let e = Ewt::from_file(std::fs::File::open(&path).unwrap()).err().unwrap().to_string();
    assert!(e.starts_with("truncated EWT file") && !e.contains('\n'), "{}", e);
    std::fs::write(&path, &bytes[..5]).unwrap();
    let e = Ewt::from_file(std::fs::File::open(&path).unwrap()).err().unwrap().to_string();
    assert!(e.contains("too short"), "{}", e);
    std::fs::remove_dir_all(&dir).unwrap();
}
