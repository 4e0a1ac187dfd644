//! Subjects end to end: enrolment through the real face models on the CPU (one face per
//! picture, or nothing is stored), reads, changes, added faces, erasure (crops leave the media
//! store), the `/poi` aliases, and the alerts of matches: listing, filters, acknowledgement
//! and dismissal.

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use vigil::config::Config;
use vigil_actors::frame::{RgbImage, decode, encode_jpeg};
use vigil_schemas::events::{
    FrameRef, NormBox, SubjectCategory, SubjectEnrolled, SubjectFace, SubjectMatched,
    subject_stream,
};
use vigil_schemas::{DomainEvent, EventMeta, ExpectedVersion, SubjectEvent};

use crate::support::{
    TestDb, TestServer, Which, answer, assert_error, assert_rebuild_equals_live, blob_count, call,
    stream_events,
};

async fn start(db: &TestDb) -> TestServer {
    TestServer::start(Config {
        models_backend: vigil_models::BackendPreference::Cpu,
        ..db.config()
    })
    .await
}

fn picture(name: &str) -> Vec<u8> {
    let path = vigil_models::default_assets_dir().join("images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup (or scripts/fetch-assets)",
            path.display()
        )
    })
}

/// A flat grey JPEG: no face.
fn grey() -> Vec<u8> {
    encode_jpeg(
        &RgbImage {
            width: 320,
            height: 240,
            data: vec![128; 320 * 240 * 3],
        },
        90,
    )
}

/// The astronaut photo twice, side by side: two faces.
fn two_astronauts() -> Vec<u8> {
    let one = decode(&picture("astronaut.png")).unwrap();
    let row = one.width as usize * 3;
    let mut data = Vec::with_capacity(one.data.len() * 2);
    for line in one.data.chunks(row) {
        data.extend_from_slice(line);
        data.extend_from_slice(line);
    }
    encode_jpeg(
        &RgbImage {
            width: one.width * 2,
            height: one.height,
            data,
        },
        90,
    )
}

fn form(files: &[(&str, Vec<u8>)], fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        let mime = if name.ends_with(".png") {
            "image/png"
        } else if name.ends_with(".txt") {
            "text/plain"
        } else {
            "image/jpeg"
        };
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(name.to_string())
                .mime_str(mime)
                .unwrap(),
        );
    }
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form
}

async fn upload(server: &TestServer, path: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    answer(
        server
            .req(Method::POST, path)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The head of the log and the files in the media store: what a refused request must leave
/// as it was.
async fn stored(server: &TestServer, db: &TestDb) -> (u64, usize) {
    (server.head().await, blob_count(db))
}

/// The media at `url`: its status and bytes.
async fn media(server: &TestServer, url: &str) -> (u16, Vec<u8>) {
    let res = server.req(Method::GET, url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.bytes().await.unwrap().to_vec())
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_keeps_one_face_per_picture_and_erasure_removes_them_on_sqlite() {
    enrolment_keeps_one_face_per_picture_and_erasure_removes_them(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_keeps_one_face_per_picture_and_erasure_removes_them_on_postgres() {
    enrolment_keeps_one_face_per_picture_and_erasure_removes_them(Which::Postgres).await;
}

async fn enrolment_keeps_one_face_per_picture_and_erasure_removes_them(which: Which) {
    let db = TestDb::new(which).await;
    let server = start(&db).await;

    // Refused uploads store nothing: no event, no media file.
    let before = stored(&server, &db).await;
    let watch = [("name", "Leo"), ("category", "watchlist")];
    let refusals: Vec<(reqwest::multipart::Form, u16, &str, Value)> = vec![
        (
            form(&[], &watch),
            422,
            "VALIDATION_FAILED",
            json!({"field": "files"}),
        ),
        (
            form(
                &(0..6)
                    .map(|i| {
                        if i == 0 {
                            ("a.jpg", picture("messi5.jpg"))
                        } else {
                            ("b.jpg", grey())
                        }
                    })
                    .collect::<Vec<_>>(),
                &watch,
            ),
            422,
            "VALIDATION_FAILED",
            json!({"field": "files"}),
        ),
        (
            form(
                &[
                    ("messi5.jpg", picture("messi5.jpg")),
                    ("notes.txt", b"not a picture".to_vec()),
                ],
                &watch,
            ),
            422,
            "INVALID_IMAGE",
            json!({"field": "files[1]", "index": 1, "file": "notes.txt"}),
        ),
        (
            form(
                &[("messi5.jpg", picture("messi5.jpg")), ("grey.jpg", grey())],
                &watch,
            ),
            422,
            "FACE_COUNT",
            json!({"field": "files[1]", "index": 1, "file": "grey.jpg", "faces": 0}),
        ),
        (
            form(
                &[
                    ("messi5.jpg", picture("messi5.jpg")),
                    ("pair.jpg", two_astronauts()),
                    ("grey.jpg", grey()),
                ],
                &watch,
            ),
            422,
            "FACE_COUNT",
            json!({"field": "files[1]", "index": 1, "file": "pair.jpg", "faces": 2}),
        ),
        (
            form(
                &[("messi5.jpg", picture("messi5.jpg"))],
                &[("category", "watchlist")],
            ),
            422,
            "VALIDATION_FAILED",
            json!({"field": "name"}),
        ),
        (
            form(
                &[("messi5.jpg", picture("messi5.jpg"))],
                &[("name", "Leo"), ("category", "friend")],
            ),
            422,
            "VALIDATION_FAILED",
            json!({"field": "category"}),
        ),
        (
            form(
                &[("messi5.jpg", picture("messi5.jpg"))],
                &[
                    ("name", "Leo"),
                    ("category", "authorised"),
                    ("severity", "high"),
                ],
            ),
            422,
            "VALIDATION_FAILED",
            json!({"field": "severity"}),
        ),
        (
            form(
                &[("messi5.jpg", picture("messi5.jpg"))],
                &[
                    ("name", "Leo"),
                    ("category", "watchlist"),
                    ("colour", "red"),
                ],
            ),
            422,
            "VALIDATION_FAILED",
            json!({"field": "colour"}),
        ),
    ];
    for (i, (form, want, code, details)) in refusals.into_iter().enumerate() {
        let (status, body) = upload(&server, "/api/v1/subjects", form).await;
        assert_error(status, &body, want, code);
        for (key, value) in details.as_object().unwrap() {
            assert_eq!(&body["error"]["details"][key], value, "refusal {i}: {body}");
        }
        assert_eq!(
            stored(&server, &db).await,
            before,
            "refusal {i} stored something: {body}"
        );
    }
    // The message says which picture and why; every refused picture is listed.
    let (_, body) = upload(
        &server,
        "/api/v1/subjects",
        form(
            &[("grey.jpg", grey()), ("pair.jpg", two_astronauts())],
            &watch,
        ),
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("files[0]") && message.contains("grey.jpg"),
        "{message}"
    );
    assert!(message.contains("no face"), "{message}");
    let listed = body["error"]["details"]["images"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    assert_eq!(listed[1]["reason"], "2 faces found");
    assert_eq!(stored(&server, &db).await, before);

    // Enrolment: one face with its crop and descriptor.
    let res = server
        .req(Method::POST, "/api/v1/subjects")
        .multipart(form(
            &[("astronaut.png", picture("astronaut.png"))],
            &[
                ("name", " Eileen "),
                ("category", "watchlist"),
                ("notes", "banned from site"),
            ],
        ))
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let position: u64 = res.headers()["x-vigil-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, eileen) = answer(res).await;
    assert_eq!(status, 201, "{eileen}");
    let id = eileen["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/subjects/{id}"));
    assert_eq!(position, server.head().await);
    assert_eq!(eileen["name"], "Eileen");
    assert_eq!(eileen["category"], "watchlist");
    assert_eq!(eileen["severity"], "high", "the watch list's default");
    assert_eq!(eileen["notes"], "banned from site");
    assert_eq!(eileen["face_count"], 1);
    assert_eq!(eileen["version"], 1);
    let faces = eileen["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{eileen}");
    assert!(faces[0]["score"].as_f64().unwrap() > 0.5);
    let crop = faces[0]["crop"].as_str().unwrap().to_string();
    assert_eq!(faces[0]["crop_url"], format!("/api/v1/media/{crop}"));
    assert_eq!(blob_count(&db), before.1 + 1);
    let (status, jpeg) = media(&server, &format!("/api/v1/media/{crop}")).await;
    assert_eq!(status, 200);
    let cropped = decode(&jpeg).expect("the crop is a JPEG");
    assert!(cropped.width < 512 && cropped.height < 512, "{cropped:?}");
    let x1 = faces[0]["bbox"]["x1"].as_f64().unwrap();
    assert!(x1 > 0.2 && x1 < 0.5, "the face's box: {eileen}");

    // The read model holds the 128-d descriptor the event recorded.
    let enrolled = stream_events(&server, &subject_stream(&id)).await;
    assert_eq!(enrolled[0]["event_type"], "subject.enrolled");
    assert_eq!(enrolled[0]["actor"], "key:config-admin");
    let recorded: Vec<f32> =
        serde_json::from_value(enrolled[0]["payload"]["faces"][0]["embedding"].clone()).unwrap();
    let all = vigil_projections::subjects::all_faces(server.app.pool())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let (subject, category, _, name, face_id, embedding) = &all[0];
    assert_eq!(
        (subject, *category, name.as_str()),
        (&id, SubjectCategory::Watchlist, "Eileen")
    );
    assert_eq!(face_id, faces[0]["face_id"].as_str().unwrap());
    assert_eq!(embedding.len(), 128);
    assert_eq!(embedding, &recorded);
    let norm = euclidean(embedding, &[0.0; 128]);
    assert!(norm > 0.1, "a real descriptor, not zeros: {norm}");

    // Read and list.
    let (status, got) = call(
        &server,
        Method::GET,
        &format!("/api/v1/subjects/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, eileen);
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/subjects/no-such-subject",
        None,
    )
    .await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");

    // A second person, authorised, from the same photo: the same crop file.
    let (status, twin) = upload(
        &server,
        "/api/v1/subjects",
        form(
            &[("astronaut.png", picture("astronaut.png"))],
            &[("name", "Twin"), ("category", "authorised")],
        ),
    )
    .await;
    assert_eq!(status, 201, "{twin}");
    let twin_id = twin["id"].as_str().unwrap().to_string();
    assert_eq!(twin["faces"][0]["crop"], crop.as_str());
    assert!(twin.get("severity").is_none(), "{twin}");
    let all = vigil_projections::subjects::all_faces(server.app.pool())
        .await
        .unwrap();
    let twin_face = all.iter().find(|f| f.0 == twin_id).unwrap();
    assert!(
        euclidean(&twin_face.5, embedding) < 0.1,
        "same photo, same descriptor"
    );

    let (_, page) = call(&server, Method::GET, "/api/v1/subjects", None).await;
    assert_eq!(
        ids(&page),
        [id.as_str(), twin_id.as_str()],
        "enrolment order"
    );
    let (_, page) = call(
        &server,
        Method::GET,
        "/api/v1/subjects?category=authorised",
        None,
    )
    .await;
    assert_eq!(ids(&page), [twin_id.as_str()]);
    let (_, first) = call(&server, Method::GET, "/api/v1/subjects?limit=1", None).await;
    assert_eq!(ids(&first), [id.as_str()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = call(
        &server,
        Method::GET,
        &format!("/api/v1/subjects?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&second), [twin_id.as_str()]);
    assert!(second.get("next_cursor").is_none(), "{second}");
    for bad in ["?limit=0", "?cursor=junk", "?category=friend"] {
        let (status, body) = call(
            &server,
            Method::GET,
            &format!("/api/v1/subjects{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }

    // Changes.
    let path = format!("/api/v1/subjects/{id}");
    let (status, body) = call(
        &server,
        Method::PATCH,
        &path,
        Some(json!({"name": "Eileen C.", "severity": "critical"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["severity"].as_str()),
        (Some("Eileen C."), Some("critical"))
    );
    assert_eq!(body["notes"], "banned from site");
    assert_eq!(body["version"], 2);
    let (status, body) = call(
        &server,
        Method::PATCH,
        &path,
        Some(json!({"category": "authorised"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["category"], "authorised");
    assert!(
        body.get("severity").is_none(),
        "moving to the authorised list clears the severity: {body}"
    );
    let head = server.head().await;
    for (bad, status_wanted, field) in [
        (json!({"severity": "low"}), 422, "severity"),
        (json!({}), 422, "body"),
        (json!({"colour": "red"}), 422, "colour"),
        (json!({"name": "   "}), 422, "name"),
    ] {
        let (status, body) = call(&server, Method::PATCH, &path, Some(bad.clone())).await;
        assert_eq!(status, status_wanted, "{bad}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{bad}: {body}");
    }
    let (status, body) = call(
        &server,
        Method::PATCH,
        "/api/v1/subjects/nobody",
        Some(json!({"name": "X"})),
    )
    .await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    assert_eq!(server.head().await, head, "refused changes record nothing");
    let (status, body) = call(
        &server,
        Method::PATCH,
        &path,
        Some(json!({"category": "watchlist"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["severity"], "high");

    // Added faces: refused pictures store nothing; a good one joins the subject.
    let faces_path = format!("/api/v1/subjects/{id}/faces");
    let before = stored(&server, &db).await;
    for (files, code) in [
        (
            vec![("messi5.jpg", picture("messi5.jpg")), ("grey.jpg", grey())],
            "FACE_COUNT",
        ),
        (vec![], "VALIDATION_FAILED"),
    ] {
        let (status, body) = upload(&server, &faces_path, form(&files, &[])).await;
        assert_error(status, &body, 422, code);
    }
    let (status, body) = upload(
        &server,
        &faces_path,
        form(&[("m.jpg", picture("messi5.jpg"))], &[("name", "x")]),
    )
    .await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(body["error"]["details"]["field"], "name");
    assert_eq!(stored(&server, &db).await, before);
    let (status, body) = upload(
        &server,
        "/api/v1/subjects/nobody/faces",
        form(&[("m.jpg", picture("messi5.jpg"))], &[]),
    )
    .await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    let (status, body) = upload(
        &server,
        &faces_path,
        form(&[("messi5.jpg", picture("messi5.jpg"))], &[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["face_count"], 2);
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces[0]["crop"], crop.as_str(), "enrolment order");
    let messi_crop = faces[1]["crop"].as_str().unwrap().to_string();
    assert_ne!(messi_crop, crop);
    assert_eq!(
        media(&server, &format!("/api/v1/media/{messi_crop}"))
            .await
            .0,
        200
    );
    let face_ids: Vec<Value> = faces.iter().map(|f| f["face_id"].clone()).collect();
    // The Lance table holds every enrolled face, with its subject and category.
    let vectors = server.app.vectors().clone();
    let lance_faces = async |position: u64| {
        let status = server.app.projection_status("vectors").unwrap();
        assert!(
            status
                .wait_for(position, std::time::Duration::from_secs(30))
                .await,
            "the vectors projection reaches {position}"
        );
        vectors.all_faces().await.unwrap()
    };
    let in_lance = lance_faces(server.head().await).await;
    assert_eq!(in_lance.len(), 3, "{in_lance:?}");
    let mine: Vec<Value> = in_lance
        .iter()
        .filter(|f| f.subject_id == id)
        .map(|f| json!(f.face_id))
        .collect();
    let mut sorted_ids = face_ids.clone();
    sorted_ids.sort_by_key(|v| v.as_str().unwrap().to_string());
    assert_eq!(mine, sorted_ids);
    // Moved to the authorised list and back before its second face was added; the twin
    // is authorised.
    for f in &in_lance {
        let want = if f.subject_id == id {
            "watchlist"
        } else {
            "authorised"
        };
        assert_eq!(f.category, want, "{f:?}");
        assert_eq!(f.embedding.len(), 128);
    }

    // Erasure: recorded, faces and crops gone, except a crop another subject shows.
    let res = server.req(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let erased_at: u64 = res.headers()["x-vigil-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let events = stream_events(&server, &subject_stream(&id)).await;
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "subject.erased");
    assert_eq!(last["position"], erased_at);
    assert_eq!(last["payload"]["reason"], "erased through the API");
    assert_eq!(last["payload"]["face_ids"], json!(face_ids));
    let (status, body) = call(&server, Method::GET, &path, None).await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    assert_eq!(
        media(&server, &format!("/api/v1/media/{messi_crop}"))
            .await
            .0,
        404
    );
    assert_eq!(
        media(&server, &format!("/api/v1/media/{crop}")).await.0,
        200,
        "the twin still shows this crop"
    );
    let all = vigil_projections::subjects::all_faces(server.app.pool())
        .await
        .unwrap();
    assert!(all.iter().all(|f| f.0 != id), "{all:?}");
    assert_eq!(all.len(), 1);
    let in_lance = lance_faces(erased_at).await;
    assert_eq!(
        in_lance.len(),
        1,
        "the erased faces left Lance: {in_lance:?}"
    );
    assert_eq!(in_lance[0].subject_id, twin_id);
    let (_, page) = call(&server, Method::GET, "/api/v1/subjects", None).await;
    assert_eq!(ids(&page), [twin_id.as_str()]);
    // The id is spent.
    let head = server.head().await;
    let (status, body) = call(&server, Method::DELETE, &path, None).await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    let (status, body) = call(&server, Method::PATCH, &path, Some(json!({"name": "Back"}))).await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    assert_eq!(server.head().await, head);

    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/subjects/{twin_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        media(&server, &format!("/api/v1/media/{crop}")).await.0,
        404
    );
    assert_eq!(blob_count(&db), 0, "every crop is gone");
    assert!(lance_faces(server.head().await).await.is_empty());
    server.stop().await;
    assert_rebuild_equals_live(&db, "vectors").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poi_endpoints_are_the_watch_list() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = start(&db).await;
    let before = (server.head().await, blob_count(&db));
    let (status, body) = upload(
        &server,
        "/api/v1/poi",
        form(
            &[("messi5.jpg", picture("messi5.jpg"))],
            &[("name", "Leo"), ("category", "authorised")],
        ),
    )
    .await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert_eq!(body["error"]["details"]["field"], "category");
    assert_eq!((server.head().await, blob_count(&db)), before);

    let res = server
        .req(Method::POST, "/api/v1/poi")
        .multipart(form(
            &[("messi5.jpg", picture("messi5.jpg"))],
            &[("name", "Leo"), ("severity", "medium")],
        ))
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let (status, leo) = answer(res).await;
    assert_eq!(status, 201, "{leo}");
    let leo_id = leo["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/poi/{leo_id}"));
    assert_eq!(leo["category"], "watchlist");
    assert_eq!(leo["severity"], "medium");
    let (status, staff) = upload(
        &server,
        "/api/v1/subjects",
        form(
            &[("astronaut.png", picture("astronaut.png"))],
            &[("name", "Staff"), ("category", "authorised")],
        ),
    )
    .await;
    assert_eq!(status, 201, "{staff}");
    let staff_id = staff["id"].as_str().unwrap().to_string();

    let (_, page) = call(&server, Method::GET, "/api/v1/poi", None).await;
    assert_eq!(ids(&page), [leo_id.as_str()]);
    let (_, page) = call(&server, Method::GET, "/api/v1/subjects", None).await;
    assert_eq!(ids(&page).len(), 2);
    let (status, body) = call(&server, Method::GET, &format!("/api/v1/poi/{leo_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Leo");
    let (status, body) = call(
        &server,
        Method::GET,
        &format!("/api/v1/poi/{staff_id}"),
        None,
    )
    .await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    let head = server.head().await;
    let (status, body) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/poi/{staff_id}"),
        None,
    )
    .await;
    assert_error(status, &body, 404, "SUBJECT_NOT_FOUND");
    assert_eq!(
        server.head().await,
        head,
        "an authorised subject is not erased through /poi"
    );
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/api/v1/subjects/{staff_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Moved to the watch list, the subject is a person of interest.
    let (status, _) = call(
        &server,
        Method::PATCH,
        &format!("/api/v1/subjects/{staff_id}"),
        Some(json!({"category": "watchlist"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = call(&server, Method::GET, "/api/v1/poi", None).await;
    assert_eq!(
        ids(&page),
        [staff_id.as_str(), leo_id.as_str()],
        "newest enrolment first"
    );

    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/poi/{leo_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, page) = call(&server, Method::GET, "/api/v1/poi", None).await;
    assert_eq!(ids(&page), [staff_id.as_str()]);
    let events = stream_events(&server, &subject_stream(&leo_id)).await;
    assert_eq!(events.last().unwrap()["event_type"], "subject.erased");
    server.stop().await;
}

fn at(minute: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(minute)
}

/// Enrols subject `id` straight into the store (no models: a made-up descriptor).
async fn seed_subject(server: &TestServer, id: &str, name: &str) {
    let enrolled = SubjectEvent::Enrolled(SubjectEnrolled {
        subject_id: id.into(),
        name: name.into(),
        category: SubjectCategory::Watchlist,
        severity: Some(vigil_schemas::events::Severity::High),
        notes: String::new(),
        faces: vec![SubjectFace {
            face_id: format!("{id}-face"),
            crop: "ab".repeat(32),
            bbox: NormBox {
                x1: 0.1,
                y1: 0.1,
                x2: 0.3,
                y2: 0.3,
            },
            score: 0.9,
            embedding: vec![0.05; 128],
        }],
    });
    server
        .app
        .store()
        .append(
            &subject_stream(id),
            ExpectedVersion::NoStream,
            vec![enrolled.to_new_event(at(0), &EventMeta::system())],
        )
        .await
        .unwrap();
}

/// Records a camera's match of subject `subject` straight into the store.
async fn seed_match(
    server: &TestServer,
    match_id: &str,
    subject: &str,
    camera: &str,
    minute: i64,
    distance: f64,
    second_distance: Option<f64>,
) {
    let matched = SubjectEvent::Matched(SubjectMatched {
        match_id: match_id.into(),
        subject_id: subject.into(),
        subject_name: format!("name of {subject}"),
        category: SubjectCategory::Watchlist,
        camera_id: camera.into(),
        track_id: format!("trk-{match_id}"),
        distance,
        second_distance,
        crop: "cd".repeat(32),
        frame: FrameRef {
            persons: vec![],
            blob: "ef".repeat(32),
            frame_number: 40 + minute as u64,
            at: at(minute),
        },
    });
    server
        .app
        .store()
        .append(
            &subject_stream(subject),
            ExpectedVersion::Any,
            vec![matched.to_new_event(at(minute), &EventMeta::system())],
        )
        .await
        .unwrap();
}

/// Waits until the subjects read model has applied every stored event.
async fn caught_up(server: &TestServer) {
    let head = server.head().await;
    let status = server.app.projection_status("subjects").unwrap();
    assert!(
        status
            .wait_for(head, std::time::Duration::from_secs(10))
            .await,
        "the subjects projection did not reach {head}"
    );
}

/// A request with key `key` instead of the admin key.
fn with_key(server: &TestServer, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    server
        .client
        .request(method, server.url(path))
        .header("x-api-key", key)
}

async fn alert_ids(server: &TestServer, query: &str, key: Option<&str>) -> Vec<String> {
    let path = format!("/api/v1/alerts{query}");
    let req = match key {
        Some(key) => with_key(server, Method::GET, &path, key),
        None => server.req(Method::GET, &path),
    };
    let (status, page) = answer(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{query}: {page}");
    ids(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_acknowledged_once_and_dismissed_on_sqlite() {
    alerts_are_listed_acknowledged_once_and_dismissed(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_acknowledged_once_and_dismissed_on_postgres() {
    alerts_are_listed_acknowledged_once_and_dismissed(Which::Postgres).await;
}

async fn alerts_are_listed_acknowledged_once_and_dismissed(which: Which) {
    let db = TestDb::new(which).await;
    let server = start(&db).await;
    seed_subject(&server, "s1", "Eileen").await;
    seed_match(&server, "m1", "s1", "cam-a", 1, 0.3, None).await;
    seed_match(&server, "m2", "s1", "cam-b", 2, 0.5, Some(0.9)).await;
    seed_match(&server, "m3", "s1", "cam-a", 3, 0.4, None).await;
    caught_up(&server).await;

    let (status, page) = call(&server, Method::GET, "/api/v1/alerts", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), ["m3", "m2", "m1"], "newest first");
    let m2 = &page["items"][1];
    assert_eq!(m2["subject_id"], "s1");
    assert_eq!(m2["subject_name"], "name of s1");
    assert_eq!(m2["category"], "watchlist");
    assert_eq!(m2["camera_id"], "cam-b");
    assert_eq!(m2["track_id"], "trk-m2");
    assert_eq!(m2["distance"], 0.5);
    assert_eq!(m2["similarity"], 0.75);
    assert_eq!(m2["second_distance"], 0.9);
    assert_eq!(m2["crop_url"], format!("/api/v1/media/{}", "cd".repeat(32)));
    assert_eq!(
        m2["frame"]["url"],
        format!("/api/v1/media/{}", "ef".repeat(32))
    );
    assert_eq!(m2["frame"]["frame_number"], 42);
    assert_eq!(
        serde_json::from_value::<DateTime<Utc>>(m2["at"].clone()).unwrap(),
        at(2)
    );
    assert_eq!(m2["acknowledged"], false);
    assert!(page["items"][0].get("second_distance").is_none());

    // Filters and pages.
    assert_eq!(
        alert_ids(&server, "?camera_id=cam-a", None).await,
        ["m3", "m1"]
    );
    assert_eq!(
        alert_ids(&server, "?subject_id=s1&limit=5", None)
            .await
            .len(),
        3
    );
    assert!(alert_ids(&server, "?subject_id=s2", None).await.is_empty());
    assert!(
        alert_ids(&server, "?category=authorised", None)
            .await
            .is_empty()
    );
    assert_eq!(
        alert_ids(&server, "?category=watchlist", None).await.len(),
        3
    );
    assert_eq!(
        alert_ids(
            &server,
            "?from=2025-03-01T10:02:00Z&to=2025-03-01T10:03:00Z",
            None
        )
        .await,
        ["m2"]
    );
    let (_, first) = call(&server, Method::GET, "/api/v1/alerts?limit=2", None).await;
    assert_eq!(ids(&first), ["m3", "m2"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(
        alert_ids(&server, &format!("?limit=2&cursor={cursor}"), None).await,
        ["m1"]
    );
    for bad in [
        "?limit=0",
        "?cursor=junk",
        "?from=2025-03-01T11:00:00Z&to=2025-03-01T10:00:00Z",
        "?acknowledged=maybe",
    ] {
        let (status, body) =
            call(&server, Method::GET, &format!("/api/v1/alerts{bad}"), None).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }

    // A key restricted to cam-b sees and handles cam-b's alerts only.
    let (status, issued) = call(
        &server,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "gate", "scopes": ["read:incidents", "write:incidents"], "camera_ids": ["cam-b"]})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let gate = issued["secret"].as_str().unwrap().to_string();
    assert_eq!(alert_ids(&server, "", Some(&gate)).await, ["m2"]);
    let res = with_key(&server, Method::POST, "/api/v1/alerts/m1/ack", &gate)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_error(status, &body, 404, "ALERT_NOT_FOUND");

    // Acknowledged once, however often it is asked.
    for _ in 0..2 {
        let (status, body) = call(&server, Method::POST, "/api/v1/alerts/m1/ack", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], "m1");
        assert_eq!(body["acknowledged"], true);
        assert!(body["acknowledged_at"].is_string(), "{body}");
    }
    let acks = stream_events(&server, "alert-m1").await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["event_type"], "alert.acknowledged");
    assert_eq!(acks[0]["actor"], "key:config-admin");
    assert_eq!(alert_ids(&server, "?acknowledged=true", None).await, ["m1"]);
    assert_eq!(
        alert_ids(&server, "?acknowledged=false", None).await,
        ["m3", "m2"]
    );
    let (status, body) = call(&server, Method::POST, "/api/v1/alerts/nope/ack", None).await;
    assert_error(status, &body, 404, "ALERT_NOT_FOUND");

    // Dismissal: the older ones, then (for the restricted key) only its cameras', then all.
    let (status, body) = call(
        &server,
        Method::DELETE,
        "/api/v1/alerts?before=2025-03-01T10:02:30Z",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dismissed"], 2);
    assert_eq!(alert_ids(&server, "", None).await, ["m3"]);
    let (status, body) = call(&server, Method::POST, "/api/v1/alerts/m1/ack", None).await;
    assert_error(status, &body, 404, "ALERT_NOT_FOUND");
    let res = with_key(&server, Method::DELETE, "/api/v1/alerts", &gate)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!((status, &body["dismissed"]), (200, &json!(0)), "{body}");
    let (status, body) = call(&server, Method::DELETE, "/api/v1/alerts", None).await;
    assert_eq!((status, &body["dismissed"]), (200, &json!(1)), "{body}");
    assert!(alert_ids(&server, "", None).await.is_empty());
    let dismissed = stream_events(&server, "alert-m3").await;
    assert_eq!(dismissed.last().unwrap()["event_type"], "alert.dismissed");

    // Erasing the subject takes its alerts with it (they name the person).
    seed_match(&server, "m4", "s1", "cam-a", 4, 0.2, None).await;
    caught_up(&server).await;
    assert_eq!(alert_ids(&server, "", None).await, ["m4"]);
    let (status, _) = call(&server, Method::DELETE, "/api/v1/subjects/s1", None).await;
    assert_eq!(status, 204);
    assert!(alert_ids(&server, "", None).await.is_empty());

    // The read model rebuilt from the log equals the live one.
    seed_subject(&server, "s2", "Bob").await;
    seed_match(&server, "m5", "s2", "cam-a", 5, 0.3, Some(0.7)).await;
    seed_match(&server, "m6", "s2", "cam-b", 6, 0.35, None).await;
    caught_up(&server).await;
    let (status, _) = call(&server, Method::POST, "/api/v1/alerts/m5/ack", None).await;
    assert_eq!(status, 200);
    server.stop().await;
    assert_rebuilds_equal(&db).await;
    db.cleanup().await;
}

/// The subjects read model, rebuilt from position 0 after the server stopped, equals the live
/// one table by table (and every table holds rows).
async fn assert_rebuilds_equal(db: &TestDb) {
    for digest in assert_rebuild_equals_live(db, "subjects").await {
        assert!(
            !digest.starts_with("0:"),
            "every table holds rows: {digest}"
        );
    }
}

/// A face-search form: `image` parts and text fields.
fn search_form(images: &[(&str, Vec<u8>)], fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in images {
        form = form.part(
            "image",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_search_refuses_what_it_cannot_search_by_and_stores_nothing() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = start(&db).await;
    let before = stored(&server, &db).await;
    let astronaut = || vec![("astronaut.png", picture("astronaut.png"))];
    let cases: Vec<(reqwest::multipart::Form, &str, &str)> = vec![
        (search_form(&[], &[]), "VALIDATION_FAILED", "image"),
        (
            search_form(
                &[
                    ("a.png", picture("astronaut.png")),
                    ("b.png", picture("astronaut.png")),
                ],
                &[],
            ),
            "VALIDATION_FAILED",
            "image",
        ),
        (
            search_form(&[("notes.txt", b"not a picture".to_vec())], &[]),
            "INVALID_IMAGE",
            "image[0]",
        ),
        (
            search_form(&[("grey.jpg", grey())], &[]),
            "FACE_COUNT",
            "image[0]",
        ),
        (
            search_form(&[("two.jpg", two_astronauts())], &[]),
            "FACE_COUNT",
            "image[0]",
        ),
        (
            search_form(&astronaut(), &[("start", "yesterday")]),
            "VALIDATION_FAILED",
            "start",
        ),
        (
            search_form(
                &astronaut(),
                &[
                    ("start", "2026-01-02T00:00:00Z"),
                    ("end", "2026-01-01T00:00:00Z"),
                ],
            ),
            "VALIDATION_FAILED",
            "end",
        ),
        (
            search_form(&astronaut(), &[("top_k", "0")]),
            "VALIDATION_FAILED",
            "top_k",
        ),
        (
            search_form(&astronaut(), &[("top_k", "101")]),
            "VALIDATION_FAILED",
            "top_k",
        ),
        (
            search_form(&astronaut(), &[("max_distance", "3")]),
            "VALIDATION_FAILED",
            "max_distance",
        ),
        (
            search_form(&astronaut(), &[("camera_ids", "door,,hall")]),
            "VALIDATION_FAILED",
            "camera_ids",
        ),
        (
            search_form(&astronaut(), &[("name", "x")]),
            "VALIDATION_FAILED",
            "name",
        ),
    ];
    for (form, code, field) in cases {
        let (status, body) = upload(&server, "/api/v1/search/face", form).await;
        assert_error(status, &body, 422, code);
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    // A good search over empty tables finds nothing, and says what it did.
    let (status, body) = upload(
        &server,
        "/api/v1/search/face",
        search_form(&astronaut(), &[("top_k", "5")]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"], json!([]));
    assert_eq!(body["search_stats"]["stage"], "appearances");
    assert_eq!(body["search_stats"]["vectors_searched"], 0);
    assert_eq!(
        stored(&server, &db).await,
        before,
        "a search stores nothing"
    );
    server.stop().await;
    db.cleanup().await;
}

/// `GET /api/v1/poi` lists the newest enrolment first, `order=asc` the oldest, and pages keep
/// the order; `GET /api/v1/subjects` keeps id order unless asked; a bad `order` is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_take_an_order_and_poi_is_newest_first() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = start(&db).await;
    for id in ["p-1", "p-2", "p-3"] {
        seed_subject(&server, id, id).await;
    }
    let subjects = server.app.projection_status("subjects").unwrap();
    assert!(
        subjects
            .wait_for(server.head().await, std::time::Duration::from_secs(10))
            .await
    );
    let list = |path: &'static str| {
        let server = &server;
        async move {
            let (status, page) = call(server, Method::GET, path, None).await;
            assert_eq!(status, 200, "{path}: {page}");
            page
        }
    };
    assert_eq!(ids(&list("/api/v1/poi").await), ["p-3", "p-2", "p-1"]);
    assert_eq!(
        ids(&list("/api/v1/poi?order=desc").await),
        ["p-3", "p-2", "p-1"]
    );
    assert_eq!(
        ids(&list("/api/v1/poi?order=asc").await),
        ["p-1", "p-2", "p-3"]
    );
    assert_eq!(ids(&list("/api/v1/subjects").await), ["p-1", "p-2", "p-3"]);
    assert_eq!(
        ids(&list("/api/v1/subjects?order=desc").await),
        ["p-3", "p-2", "p-1"]
    );

    // Pages keep the order.
    let first = list("/api/v1/poi?limit=2").await;
    assert_eq!(ids(&first), ["p-3", "p-2"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = call(
        &server,
        Method::GET,
        &format!("/api/v1/poi?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&rest), ["p-1"]);
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    let first = list("/api/v1/poi?limit=2&order=asc").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = call(
        &server,
        Method::GET,
        &format!("/api/v1/poi?limit=2&order=asc&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&rest), ["p-3"]);

    for path in [
        "/api/v1/poi?order=newest",
        "/api/v1/subjects?order=ASC",
        "/api/v1/alerts?order=up",
        "/api/v1/incidents?order=1",
        "/api/v1/cameras?order=sideways",
    ] {
        let (status, body) = call(&server, Method::GET, path, None).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert_eq!(body["error"]["details"]["field"], "order", "{path}: {body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
    server.stop().await;
    db.cleanup().await;
}
