"""The import monitor's parts: what a source's poll changes (seen), the inventory-folder source (inventory).
Pure where it can be; the store's part is common.store.imports."""
