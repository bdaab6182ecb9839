fn main() -> anyhow::Result<()> {
    anyhow::bail!("relay serve is being written")
}
