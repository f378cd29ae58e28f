//! `wearbridge scales add|assign|list|remove`: Wi-Fi scales that post to the capture
//! listener (`capture.listen`), and which person each of their user slots is.

use super::Globals;
use crate::app;
use crate::store::Store;

/// The scale models wearbridge captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Fitbit Aria (Wi-Fi, protocol v3).
    Aria,
    /// Withings WBS01 (Wi-Fi Body Scale).
    Wbs01,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Aria => "aria",
            Kind::Wbs01 => "wbs01",
        }
    }
}

pub async fn add(globals: &Globals, kind: Kind, name: &str, mac: &str) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let mac = crate::sources::local::wbs01::mac(mac)
        .ok_or_else(|| anyhow::anyhow!("--mac: expected six hex bytes, e.g. 00:1D:C9:12:34:56"))?;
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    store.add_scale(name, kind.as_str(), &mac).await?;
    println!(
        "added scale {name} ({}); assign its user slots with `wearbridge scales assign {name} SLOT PERSON`",
        kind.as_str()
    );
    Ok(())
}

pub async fn assign(globals: &Globals, scale: &str, slot: i64, person: &str) -> anyhow::Result<()> {
    if slot <= 0 {
        anyhow::bail!("SLOT: the scale's user id (1 or more; 0 is the guest, never published)");
    }
    let loaded = globals.load()?;
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    let account = store.assign_scale_slot(scale, slot, person).await?;
    println!("slot {slot} of {scale} is {}; their readings publish through account {}", account.person, account.name);
    Ok(())
}

pub async fn list(globals: &Globals) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    if !app::store_exists(&loaded.settings) {
        println!("no scale is enrolled yet (no store at {})", loaded.settings.store.url);
        return Ok(());
    }
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    println!("{:<24} {:<6} SLOTS", "SCALE", "KIND");
    for scale in store.scales().await? {
        let slots: Vec<String> = scale.slots.iter().map(|(slot, person)| format!("{slot}={person}")).collect();
        let slots = if slots.is_empty() { "-".to_owned() } else { slots.join(" ") };
        println!("{:<24} {:<6} {slots}", scale.name, scale.kind);
    }
    Ok(())
}

pub async fn remove(globals: &Globals, name: &str) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    store.remove_scale(name).await?;
    println!("removed scale {name}; its people's readings stay published (`users remove` withdraws a person)");
    Ok(())
}
