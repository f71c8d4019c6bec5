//! Developer tool: `load_profile weights.ewt [runs]` times the pieces of loading a model (open, read and
//! validate the header, stream the tensors into the network's packed weights), native or under WASI, and prints the minimum and median of each.

use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: load_profile weights.ewt [runs]");
        std::process::exit(2);
    }
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for _ in 0..runs {
        let t = Instant::now();
        let file = std::fs::File::open(&args[1]).expect("open weights");
        rows[0].push(ms(t));
        let t1 = Instant::now();
        let ewt = effnet::Ewt::from_file(file).unwrap_or_else(|e| {
            eprintln!("{}", e);
            std::process::exit(1)
        });
        rows[1].push(ms(t1));
        let t2 = Instant::now();
        let net = effnet::Network::new(&ewt, 224, 224).expect("network");
        rows[2].push(ms(t2));
        rows[3].push(ms(t));
        drop((ewt, net));
    }
    for (name, v) in ["open", "header", "network", "total"].iter().zip(rows.iter_mut()) {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("{:8} min {:7.2} ms median {:7.2} ms", name, v[0], v[v.len() / 2]);
    }
}
