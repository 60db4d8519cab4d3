"""Stage 3: plan and generate the synthetic images that close the category (or label) gap."""
