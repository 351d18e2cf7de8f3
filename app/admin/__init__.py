"""Admin and researcher dashboards: read-only pages for researchers, actions for admins."""
