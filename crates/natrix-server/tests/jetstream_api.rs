//! The JetStream API as raw requests: account info, stream requests and their error replies, and
//! a node without JetStream, where nobody answers and requesters get no-responders.

use std::time::Duration;

use natrix_testkit::TestServer;

#[tokio::test]
async fn without_jetstream_api_requests_get_no_responders() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let result = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("$JS.API.INFO", "".into()),
    )
    .await?;
    let err = result.expect_err("nobody serves the JetStream API");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    Ok(())
}
