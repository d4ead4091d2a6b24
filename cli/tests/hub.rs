//! `--model org/name`: downloads from a Hugging Face Hub endpoint (`HF_ENDPOINT`, here a
//! server on 127.0.0.1 speaking the Hub's `resolve` protocol: ranged GETs, `ETag`,
//! `X-Repo-Commit`, `Content-Range`) into the Python-shared cache layout under `HF_HOME`,
//! then runs offline from the cache.
#![cfg(feature = "hub")]

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serve `files` (path after `/`, e.g. `org/tiny/resolve/main/config.json`) on 127.0.0.1
/// from a background thread, honouring `Range: bytes=A-[B]`; returns the endpoint and the
/// count of requests answered.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut range) = (String::new(), None);
            reader.read_line(&mut request).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap();
                    range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
                }
            }
            count.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("").trim_start_matches('/');
            let reply = match files.get(path) {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                Some(bytes) => {
                    let (a, b) = range.unwrap_or((0, None));
                    let end = b.map_or(bytes.len(), |b| (b + 1).min(bytes.len()));
                    let body = &bytes[a.min(end)..end];
                    let etag = bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3));
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{}/{}\r\n\
                         ETag: \"{etag:016x}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
                        body.len(),
                        end.max(1) - 1,
                        bytes.len()
                    );
                    [head.as_bytes(), body].concat()
                }
            };
            let _ = stream.write_all(&reply);
        }
    });
    (endpoint, served)
}

fn beit_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beit"));
    cmd.args(args).env_remove("HF_HUB_OFFLINE").env_remove("HF_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn hub_files(dir: &Path, repo: &str) -> HashMap<String, Vec<u8>> {
    ["config.json", "model.safetensors"]
        .iter()
        .map(|f| (format!("{repo}/resolve/main/{f}"), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

#[test]
fn hub_ids_download_once_then_run_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let src = fixture("cls_per_layer_relpos_meanpool");
    let (endpoint, served) = serve(hub_files(&src, "org/tiny-beit"));
    let env = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", home.to_str().unwrap())];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = beit_env(args, env);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), err)
    };

    // First use downloads into the cache, in Python's layout.
    let (ok1, info, err) = run(&["info", "--model", "org/tiny-beit", "--json"], &env);
    assert!(ok1, "{err}");
    assert!(info.contains("BeitForImageClassification"), "{info}");
    let snapshot = home.join(format!("hub/models--org--tiny-beit/snapshots/{COMMIT}"));
    assert_eq!(std::fs::read(snapshot.join("model.safetensors")).unwrap(), std::fs::read(src.join("model.safetensors")).unwrap());
    assert_eq!(std::fs::read_to_string(home.join("hub/models--org--tiny-beit/refs/main")).unwrap().trim(), COMMIT);
    let after_download = served.load(Ordering::SeqCst);
    assert!(after_download >= 4, "probe and body of two files, and a 404 for preprocessor_config.json: {after_download}");

    // Cached: no request at all, and the same outputs as the local folder.
    let out = tmp.path().join("hub.safetensors");
    let local = tmp.path().join("local.safetensors");
    let input = src.join("inputs.safetensors");
    let (ok2, _, err) = run(&["forward", "--model", "org/tiny-beit", "--input", s(&input), "--output", s(&out)], &env);
    assert!(ok2, "{err}");
    assert_eq!(served.load(Ordering::SeqCst), after_download, "a cached model makes no request");
    let (ok3, _, err) = run(&["forward", "--model", s(&src), "--input", s(&input), "--output", s(&local)], &[]);
    assert!(ok3, "{err}");
    assert_eq!(max_err(&out, &local, "logits", ""), 0.0);
    // Offline with the endpoint gone, and with HF_HUB_OFFLINE.
    let gone = [("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HOME", home.to_str().unwrap())];
    assert!(run(&["info", "--model", "org/tiny-beit"], &gone).0, "cached model, endpoint down");
    let offline = [("HF_HUB_OFFLINE", "1"), ("HF_HOME", home.to_str().unwrap())];
    assert!(run(&["info", "--model", "org/tiny-beit"], &offline).0, "cached model, HF_HUB_OFFLINE");

    // Errors name the id, the file and the endpoint.
    let (ok4, _, err) = run(&["info", "--model", "org/absent"], &env);
    assert!(!ok4 && err.contains("org/absent") && err.contains("config.json") && err.contains(&endpoint) && !err.contains("panicked"), "{err}");
    let (ok5, _, err) = run(&["info", "--model", "org/uncached"], &offline);
    assert!(!ok5 && err.contains("org/uncached") && err.contains("HF_HUB_OFFLINE"), "{err}");
    // A path that cannot be an id is left to the loader, which names it.
    let (ok6, _, err) = run(&["info", "--model", "./no/such/folder"], &env);
    assert!(!ok6 && err.contains("no/such/folder"), "{err}");
}
