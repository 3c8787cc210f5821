"""What the simulated shop sells: Segment e-commerce v2 product fields, as storefronts send."""

from __future__ import annotations

from typing import Any

SHOP_URL = "https://shop.example.com"
CURRENCY = "EUR"

PRODUCTS: list[dict[str, Any]] = [
    {
        "product_id": "p-1001",
        "sku": "FW-THROW-LIN-OAT",
        "name": "Linen Throw Blanket",
        "brand": "Fernwood Home",
        "category": "Bedroom / Throws",
        "variant": "Oatmeal",
        "price": 89.0,
    },
    {
        "product_id": "p-1002",
        "sku": "FW-MUG-STON-2",
        "name": "Stoneware Mug, set of 2",
        "brand": "Fernwood Home",
        "category": "Kitchen / Mugs",
        "variant": "Sage",
        "price": 24.5,
    },
    {
        "product_id": "p-1003",
        "sku": "FW-LAMP-OAK",
        "name": "Oak Table Lamp",
        "brand": "Fernwood Home",
        "category": "Lighting",
        "variant": "Natural",
        "price": 129.0,
    },
    {
        "product_id": "p-1004",
        "sku": "FW-CUSH-VEL-RUST",
        "name": "Velvet Cushion Cover",
        "brand": "Fernwood Home",
        "category": "Living Room / Cushions",
        "variant": "Rust",
        "price": 19.9,
    },
    {
        "product_id": "p-1005",
        "sku": "FW-RUG-JUTE-160",
        "name": "Jute Rug 160 x 230",
        "brand": "Fernwood Home",
        "category": "Living Room / Rugs",
        "variant": "160 x 230",
        "price": 149.0,
    },
]


def product(index: int, quantity: int = 1) -> dict[str, Any]:
    """A product as a Product Viewed/Added event or a `products[]` item carries it."""
    item = PRODUCTS[index]
    slug = item["sku"].lower()
    return {
        **item,
        "quantity": quantity,
        "currency": CURRENCY,
        "url": f"{SHOP_URL}/products/{slug}",
        "image_url": f"{SHOP_URL}/images/{slug}.jpg",
    }
