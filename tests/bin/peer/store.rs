//! Store roles.

use shm_typed::{Location, Store};

use crate::common::{parse, say};

/// store-check ID COUNT: open the store by id and read back every entry
/// made by store_entry_name/kind (see tests/store.rs), with type checks;
/// report "checked N", then the error for opening entry 0 as the wrong type.
pub fn check(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let count: u64 = parse(args, 2, "count")?;
    let store = Store::open(Location::Id(id)).map_err(|e| e.to_string())?;
    let mut checked = 0;
    for index in 0..count {
        let name = format!("entry-{index}");
        let ok = match index % 5 {
            0 => {
                store
                    .get_object::<u64>(&name)
                    .map_err(|e| e.to_string())?
                    .load()
                    .map_err(|e| e.to_string())?
                    == index
            }
            1 => {
                store
                    .get_object::<[u32; 4]>(&name)
                    .map_err(|e| e.to_string())?
                    .load()
                    .map_err(|e| e.to_string())?
                    == [index as u32; 4]
            }
            2 => {
                store
                    .get_object::<f64>(&name)
                    .map_err(|e| e.to_string())?
                    .load()
                    .map_err(|e| e.to_string())?
                    == index as f64 / 2.0
            }
            3 => {
                let ring = store
                    .get_spsc::<u64>(&name, 16)
                    .map_err(|e| e.to_string())?;
                let got = ring
                    .consumer()
                    .map_err(|e| e.to_string())?
                    .pop()
                    .map_err(|e| e.to_string())?;
                got == Some(index)
            }
            _ => {
                store
                    .mpmc::<u64>(&name, 16)
                    .map_err(|e| e.to_string())?
                    .pop()
                    .map_err(|e| e.to_string())?
                    == Some(index)
            }
        };
        if !ok {
            return Err(format!("{name} holds the wrong value"));
        }
        checked += 1;
    }
    say(&format!("checked {checked}"));
    match store.get_object::<[u64; 2]>("entry-0") {
        Ok(_) => say("wrong type accepted"),
        Err(error) => say(&format!("error {error}")),
    }
    Ok(())
}
