//! `file_transfer`: upload and download through the local-filesystem backend (streamed,
//! hashed, verified, fsynced, renamed into place) against a plain file copy of the same bytes
//! (`std::fs::copy` + fsync) in the same run. Prints MB/s and the ratio to the copy.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use luma_files::{
    download_verified, hash_file, upload_file, BlobKey, BlobStore, FsBlobStore, HashAlgo,
};

const SIZE: usize = 64 * 1024 * 1024;

static TIMES: Mutex<Option<HashMap<&'static str, (Duration, u64)>>> = Mutex::new(None);

fn record(name: &'static str, d: Duration, iters: u64) {
    let mut t = TIMES.lock().unwrap();
    let e = t.get_or_insert_with(HashMap::new).entry(name).or_default();
    e.0 += d;
    e.1 += iters;
}

fn make_file(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1024 * 1024];
    for i in 0..SIZE / block.len() {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(13) ^ (j as u8).wrapping_mul(7);
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
    copy: PathBuf,
    key: BlobKey,
    store: FsBlobStore,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    make_file(&src);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(FsBlobStore::new(dir.path().join("blobs")))
        .unwrap();
    let (key, _) = rt.block_on(hash_file(HashAlgo::Blake3, &src)).unwrap();
    Setup {
        dest: dir.path().join("landed.bin"),
        copy: dir.path().join("copy.bin"),
        src,
        key,
        store,
        rt,
        _dir: dir,
    }
}

fn plain_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::File::open(to).unwrap().sync_all().unwrap();
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("file_transfer");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.warm_up_time(Duration::from_secs(1));

    g.bench_function("plain_copy_fsync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&s.copy);
                let t = Instant::now();
                plain_copy(&s.src, &s.copy);
                total += t.elapsed();
            }
            record("copy", total, iters);
            total
        })
    });

    g.bench_function("upload_fs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                s.rt.block_on(s.store.delete(&s.key.to_string())).unwrap();
                let t = Instant::now();
                s.rt.block_on(upload_file(&s.store, &s.key, &s.src, None, None))
                    .unwrap();
                total += t.elapsed();
            }
            record("upload", total, iters);
            total
        })
    });

    g.bench_function("download_fs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&s.dest);
                let t = Instant::now();
                s.rt.block_on(download_verified(&s.store, &s.key, &s.dest, None))
                    .unwrap();
                total += t.elapsed();
            }
            record("download", total, iters);
            total
        })
    });
    g.finish();

    let times = TIMES.lock().unwrap().clone().unwrap_or_default();
    let mbps = |name: &str| {
        times
            .get(name)
            .map(|(d, n)| (SIZE as f64 / 1e6) * (*n as f64) / d.as_secs_f64().max(1e-9))
    };
    if let (Some(copy), Some(up), Some(down)) = (mbps("copy"), mbps("upload"), mbps("download")) {
        println!(
            "file_transfer ({} MB file, fs backend, same run):",
            SIZE / 1_000_000
        );
        println!("  plain copy + fsync : {copy:8.1} MB/s");
        println!(
            "  upload (fs)        : {up:8.1} MB/s   ratio to copy {:.2}",
            up / copy
        );
        println!(
            "  download (fs)      : {down:8.1} MB/s   ratio to copy {:.2}",
            down / copy
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
