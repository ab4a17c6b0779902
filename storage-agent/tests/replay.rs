//! A command's counter is remembered with its method, path and body: repeating it replays the
//! stored answer, and reusing it for another request (even with the same body) is refused.

mod util;

use util::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_names_one_request() {
    let world = World::start(1 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let terms = world
        .active_contract(&client, &wallet, &buyer, 64 * 1024, 3600, 10_000)
        .await;
    client
        .put(&terms.id, "a", vec![1; 100])
        .await
        .expect("put a");
    client
        .put(&terms.id, "b", vec![1; 100])
        .await
        .expect("put b");

    let signed = client.signed();
    let counter = node::now_ms() * 1000 + 777;
    let delete = |name: &'static str| {
        let path = format!("/v1/contracts/{}/objects/{name}", terms.id);
        async move {
            let resp = signed
                .send("DELETE", &path, Vec::new(), Some(counter), &[], 0)
                .await
                .expect("send");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("body"))
        }
    };
    let first = delete("a").await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(
        delete("a").await,
        first,
        "the same request replays the stored answer"
    );
    let (status, body) = delete("b").await;
    assert_eq!(
        status, 409,
        "another request with the same counter and body: {body}"
    );
    assert!(body.contains("counter_reused"), "{body}");
    assert_eq!(
        client
            .get(&terms.id, "b", None)
            .await
            .expect("b is still there")
            .len(),
        100
    );
    let view = client.contract(&terms.id).await.expect("view");
    assert_eq!((view.objects.len(), view.used_bytes), (1, 100));
}
