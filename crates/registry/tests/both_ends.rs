//! Berth's client against Berth's server: a push and a pull over plain HTTP with htpasswd
//! basic auth, and over TLS (a loopback registry is reached without certificate checks, as
//! Docker reaches it).

mod common;

use berth_registry::client::{Client, ClientConfig, ClientError, Credentials};
use berth_registry::media;
use berth_registry::server::{Server, ServerConfig};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Serves until the returned sender is dropped.
async fn start(cfg: ServerConfig) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = Server::bind(cfg).await.expect("bind");
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Pushes a blob, a config and a manifest, then reads them back.
async fn round_trip(client: &Client, domain: &str, creds: Credentials) {
    let repo = client
        .repository(domain, "team/app", creds)
        .expect("repository");
    let layer = Bytes::from(vec![42u8; 200_000]);
    let config = Bytes::from_static(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#);
    for b in [&layer, &config] {
        repo.push_blob(
            &sha(b),
            b.len() as u64,
            std::io::Cursor::new(b.to_vec()),
            &|_| {},
        )
        .await
        .expect("push blob");
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": media::OCI_LAYER, "digest": sha(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let digest = repo
        .put_manifest("v1", media::OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .expect("put manifest");
    assert_eq!(digest, sha(&manifest));
    let got = repo.get_manifest("v1").await.expect("get manifest");
    assert_eq!(got.digest, digest);
    assert_eq!(got.bytes.as_ref(), manifest.as_slice());
    let mut s = repo.get_blob(&sha(&layer), 1000).await.expect("get blob");
    let mut back = Vec::new();
    while let Some(c) = s.next().await {
        back.extend_from_slice(&c.expect("chunk"));
    }
    assert_eq!(back.as_slice(), &layer[1000..]);
    assert_eq!(repo.list_tags().await.expect("tags"), vec!["v1".to_owned()]);
}

#[tokio::test]
async fn push_and_pull_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let (addr, _stop) = start(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        root: dir.path().join("root"),
        htpasswd: Some(htpasswd),
        tls_cert: None,
        tls_key: None,
    })
    .await;
    let client = Client::new(ClientConfig::default()).unwrap();
    let domain = addr.to_string();
    let alice = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Credentials::default()
    };
    client.check_login(&domain, &alice).await.expect("login");
    let wrong = Credentials {
        password: "nope".into(),
        ..alice.clone()
    };
    assert!(matches!(
        client.check_login(&domain, &wrong).await,
        Err(ClientError::Unauthorized(_))
    ));
    let anonymous = client
        .repository(&domain, "team/app", Credentials::default())
        .unwrap();
    assert!(matches!(
        anonymous.get_manifest("v1").await,
        Err(ClientError::Unauthorized(_))
    ));
    round_trip(&client, &domain, alice).await;
}

#[tokio::test]
async fn push_and_pull_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = common::self_signed_cert(dir.path()) else {
        eprintln!("SKIPPED push_and_pull_over_tls: needs /usr/bin/openssl to make a certificate");
        return;
    };
    let (addr, _stop) = start(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        root: dir.path().join("root"),
        htpasswd: None,
        tls_cert: Some(cert),
        tls_key: Some(key),
    })
    .await;
    let client = Client::new(ClientConfig::default()).unwrap();
    round_trip(&client, &addr.to_string(), Credentials::default()).await;
}
