//! Developer tool: `infer_file weights.ewt input.f32 output.f32 [iterations]` runs the network on a raw
//! little-endian f32 [224,224,3] tensor, writes the logits and prints the per-run time (native or under WASI).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: infer_file weights.ewt input.f32 output.f32 [iterations]");
        std::process::exit(2);
    }
    let iters: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let t0 = Instant::now();
    let bytes = std::fs::read(&args[1]).expect("read weights");
    let (_, mut net) = effnet::load(bytes).unwrap_or_else(|e| {
        eprintln!("{}", e);
        std::process::exit(1)
    });
    eprintln!("load {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    let raw = std::fs::read(&args[2]).expect("read input");
    let input: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let nvar = 1;
    let mut best = vec![f64::MAX; nvar];
    let mut profs = vec![[0.0f64; 5]; nvar];
    let mut times = Vec::new();
    let mut out = Vec::new();
    for it in 0..iters {
        let t = Instant::now();
        out = net.forward(&input).expect("forward").to_vec();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let v = it % nvar;
        let el = t.elapsed().as_secs_f64() * 1e3;
        if el < best[v] {
            best[v] = el;
            profs[v] = net.profile;
        }
    }
    for v in 0..nvar {
        eprintln!(
            "variant {} min {:.2} ms profile stem/expand/dw/project/head {:.2?}",
            v, best[v], profs[v]
        );
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!("forward min {:.2} ms median {:.2} ms", times[0], times[times.len() / 2]);
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&args[3], bytes).expect("write output");
}
