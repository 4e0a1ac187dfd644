//! Media and Lance tables in an S3-compatible bucket shared by several nodes, against moto's
//! S3 server (a stand-in for MinIO or a cloud bucket; see `support::S3Server`).

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use vigil::config::Config;
use vigil::service::clips::ClipLimits;

use crate::support::{
    S3Server, TestDb, TestServer, Which, answer, call, files_under, projections_caught_up,
    rebuild_equals_live_with, record_clip, until,
};

const BUCKET: &str = "vigil-test";
const PREFIX: &str = "site-a";

fn picture(name: &str) -> Vec<u8> {
    let path = vigil_models::default_assets_dir().join("images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", path.display()))
}

/// A node of the test: its own data folder, the shared database, pepper and bucket.
fn node(db: &TestDb, s3: &S3Server, name: &str) -> Config {
    s3.config(
        Config {
            data_dir: db.dir.path().join(name),
            key_pepper: "shared-pepper-of-the-test-nodes".into(),
            models_backend: vigil_models::BackendPreference::Cpu,
            ..db.config()
        },
        BUCKET,
        PREFIX,
    )
}

fn media_key(sha: &str) -> String {
    format!("{PREFIX}/media/{}/{}/{sha}", &sha[..2], &sha[2..4])
}

async fn enrol(server: &TestServer, name: &str, picture_name: &str) -> (String, String) {
    let form = reqwest::multipart::Form::new()
        .part(
            "files",
            reqwest::multipart::Part::bytes(picture(picture_name))
                .file_name(picture_name.to_string())
                .mime_str(if picture_name.ends_with(".png") {
                    "image/png"
                } else {
                    "image/jpeg"
                })
                .unwrap(),
        )
        .text("name", name.to_string())
        .text("category", "watchlist");
    let res = server
        .req(Method::POST, "/api/v1/subjects")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["faces"][0]["crop"].as_str().unwrap().to_string(),
    )
}

async fn search_face(server: &TestServer, picture_name: &str) -> Value {
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(picture(picture_name))
            .file_name(picture_name.to_string())
            .mime_str("image/png")
            .unwrap(),
    );
    let res = server
        .req(Method::POST, "/api/v1/search/face")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn caught_up(server: &TestServer, names: &[&str]) {
    projections_caught_up(server, names, 30).await;
}

async fn get(client: &reqwest::Client, url: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = client.get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, res.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_face_tables_live_in_a_bucket_that_every_node_reads() {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let db = TestDb::new(Which::Postgres).await;

    // Node A writes: enrolment stores the crops in the bucket and its projections (A leads
    // them: it started alone) write the Lance tables there.
    let a = TestServer::start(node(&db, &s3, "a")).await;
    let (eileen, eileen_crop) = enrol(&a, "Eileen", "astronaut.png").await;
    let (leo, leo_crop) = enrol(&a, "Leo", "messi5.jpg").await;
    caught_up(&a, &["subjects", "vectors"]).await;
    let keys = s3.keys(BUCKET, PREFIX).await;
    for crop in [&eileen_crop, &leo_crop] {
        assert!(keys.contains(&media_key(crop)), "{crop} in {keys:?}");
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{PREFIX}/lance/subject_faces.lance/_versions/"))),
        "the faces table is in the bucket: {keys:?}"
    );
    assert_eq!(
        files_under(&db.dir.path().join("a/blobs")),
        0,
        "nothing in the local folder"
    );
    assert!(!db.dir.path().join("a/lance").exists());

    // Node B started afterwards, on its own empty folder, while A still leads the
    // projections: it wrote nothing, and serves the media and the face search from the bucket.
    let b = TestServer::start(node(&db, &s3, "b")).await;
    let found = search_face(&b, "astronaut.png").await;
    assert_eq!(found["search_stats"]["stage"], "subject", "{found}");
    assert_eq!(found["subject"]["id"], eileen.as_str(), "{found}");
    let crop_path = format!("/api/v1/media/{eileen_crop}");
    let res = b.req(Method::GET, &crop_path).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let crop = res.bytes().await.unwrap().to_vec();
    assert_eq!(
        hex_sha(&crop),
        eileen_crop,
        "the bytes stored are the bytes served"
    );
    let res = b
        .req(Method::GET, &crop_path)
        .header("range", "bytes=2-11")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 2-11/{}", crop.len()).as_str()
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), &crop[2..12]);
    let res = b
        .req(Method::GET, &crop_path)
        .header("range", format!("bytes={}-", crop.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);

    // Vigil's signed URL, from B: served by B from the bucket, without a key.
    let (status, signed) = call(
        &b,
        Method::POST,
        &format!("/api/v1/media/{eileen_crop}/sign?ttl_secs=60"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["url"].as_str().unwrap();
    assert!(url.starts_with("/api/v1/media/"), "{url}");
    let plain = reqwest::Client::new();
    let (status, kind, bytes) = get(&plain, &b.url(url), Some("bytes=0-3")).await;
    assert_eq!((status, kind.as_str()), (206, "image/jpeg"));
    assert_eq!(bytes, &crop[..4]);

    // With presigning on, the bucket's own URL: fetched from the bucket, typed as stored; the
    // console may load media from the bucket's origin.
    let c = TestServer::start(Config {
        s3_presign: true,
        ..node(&db, &s3, "c")
    })
    .await;
    let (status, signed) = call(
        &c,
        Method::POST,
        &format!("/api/v1/media/{eileen_crop}/sign?ttl_secs=60"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "{}/{BUCKET}/{}",
            s3.endpoint,
            media_key(&eileen_crop)
        )),
        "{url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (status, kind, bytes) = get(&plain, url, None).await;
    assert_eq!((status, kind.as_str()), (200, "image/jpeg"));
    assert_eq!(bytes, crop);
    let (status, _) = call(
        &c,
        Method::POST,
        &format!("/api/v1/media/{}/sign", "0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(status, 404, "nothing is presigned for absent media");
    let page = c.req(Method::GET, "/").send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("media-src 'self' blob: {}", s3.endpoint)),
        "{csp}"
    );
    c.stop().await;

    // A clip: uploaded from its file (in parts), served by B in ranges, deleted by retention
    // on A, gone from the bucket for both.
    let mut clip = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    clip.extend((0..(3usize << 20)).map(|i| (i * 7 % 253) as u8));
    let file = db.dir.path().join("clip.mp4");
    std::fs::write(&file, &clip).unwrap();
    let (media, size) = a.app.ingest().blobs().put_file(&file).await.unwrap();
    assert_eq!(size as usize, clip.len());
    assert!(!file.exists(), "the uploaded file is removed");
    let at = Utc::now() - chrono::Duration::minutes(10);
    record_clip(&a, "c1", &[], at, &media, clip.len()).await;
    caught_up(&a, &["clips"]).await;
    let clip_path = format!("/api/v1/media/{media}");
    let res = b.req(Method::GET, &clip_path).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        clip.as_slice(),
        "streamed whole"
    );
    let res = b
        .req(Method::GET, &clip_path)
        .header("range", "bytes=2000000-2000099")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        &clip[2_000_000..2_000_100]
    );
    let meta = vigil::service::clips::retention_meta();
    let done = vigil::service::clips::enforce(&a.app, ClipLimits::budget(1), &meta)
        .await
        .unwrap();
    assert_eq!(done.deleted, 1);
    assert_eq!(
        b.req(Method::GET, &clip_path)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(!s3.keys(BUCKET, PREFIX).await.contains(&media_key(&media)));

    // Erasing Leo on B removes his crop from the bucket and his face from the shared table,
    // which A (the writer) updates and B reads.
    let res = b
        .req(Method::DELETE, &format!("/api/v1/subjects/{leo}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        a.req(Method::GET, &format!("/api/v1/media/{leo_crop}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(
        !s3.keys(BUCKET, PREFIX)
            .await
            .contains(&media_key(&leo_crop))
    );
    caught_up(&a, &["vectors"]).await;
    until(30, "Leo's face leaves the table B reads", || async {
        let found = search_face(&b, "messi5.jpg").await;
        (found["subject"]["id"] != leo.as_str()).then_some(())
    })
    .await;
    assert_eq!(
        files_under(&db.dir.path().join("b/blobs")) + files_under(&db.dir.path().join("a/blobs")),
        0
    );
    assert!(!db.dir.path().join("b/lance").exists());
    b.stop().await;
    a.stop().await;

    // Rebuilt from position 0 into the bucket, the tables equal the live ones.
    let digests = rebuild_equals_live_with(&db, &node(&db, &s3, "a"), "vectors").await;
    assert!(
        digests.iter().any(|d| d.starts_with("1:")),
        "Eileen's face: {digests:?}"
    );
    db.cleanup().await;
}

fn hex_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn a_bucket_url_is_checked_when_the_config_loads() {
    for (url, ok) in [
        ("s3://vigil-media", true),
        ("s3://vigil-media/site-a/cams", true),
        ("s3://vigil-media/", true),
        ("s3://Vigil", false),
        ("s3://ab", false),
        ("gs://vigil-media", false),
        ("s3://vigil-media/../up", false),
        ("/var/lib/vigil", false),
    ] {
        let text = format!("object_store_url = {}\n", json!(url));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.toml");
        std::fs::write(&file, text).unwrap();
        let loaded = Config::load(Some(&file));
        assert_eq!(loaded.is_ok(), ok, "{url}: {loaded:?}");
        if let Err(e) = loaded {
            assert!(e.to_string().contains("object_store_url"), "{e}");
        }
    }
}
