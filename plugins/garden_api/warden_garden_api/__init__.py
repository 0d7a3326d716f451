"""Garden's HTTP API (cloudfoundry/garden) as a front end over the warden-framework core."""
