"""Disk quota drivers: `setquota` (vfs user quotas) and `btrfs` (qgroups)."""
