"""Quality of synthetic images: memorisation audit and recognisability (GAN-test/GAN-train)."""
