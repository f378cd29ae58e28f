//! `wearbridge schemas [NAME]`: list the published schemas or print one.

use crate::schemas::Schemas;

pub fn main(name: Option<&str>) -> anyhow::Result<()> {
    match name {
        None => {
            for n in Schemas::names() {
                println!("{n}");
            }
        }
        Some(n) => match Schemas::text(n) {
            Some(text) => print!("{text}"),
            None => anyhow::bail!("no schema named {n:?}; known: {}", Schemas::names().collect::<Vec<_>>().join(", ")),
        },
    }
    Ok(())
}
