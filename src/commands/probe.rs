//! `wearbridge probe URL`: a health check for images that ship no curl.

pub async fn main(url: &str) -> anyhow::Result<()> {
    crate::http::tls();
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let response = client.get(url).send().await.map_err(|e| anyhow::anyhow!("{url}: {}", e.without_url()))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered HTTP {}", status.as_u16());
    Ok(())
}
