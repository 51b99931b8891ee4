"""Makes the decryption test vectors in tests/integration/decrypt.rs with an independent AES implementation
(pyca/cryptography), the way WeChat encrypts user data: AES-128-CBC, PKCS#7, base64.

usage: python3 tests/support/make_decrypt_vectors.py
"""

import base64
import hashlib
import json

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SESSION_KEY = base64.b64decode("tiihtNczf5v6AKRyjwEUhQ==")
IV = bytes(range(16))


def encrypt(plaintext: bytes, pad: bool = True) -> str:
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(SESSION_KEY), modes.CBC(IV)).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


user = {
    "openId": "oMock_olivia",
    "nickName": "Olivia",
    "unionId": "uMock_olivia",
    "watermark": {"appid": "wxtest0000000001", "timestamp": 1763700000},
}
raw = json.dumps({"nickName": "Olivia"}, separators=(",", ":"))
print("iv", base64.b64encode(IV).decode())
print("user", encrypt(json.dumps(user, separators=(",", ":")).encode()))
other = dict(user, watermark={"appid": "wxsomeoneelse0001", "timestamp": 1})
print("other_app", encrypt(json.dumps(other, separators=(",", ":")).encode()))
print("not_json", encrypt(b"hello, not json"))
# 16 bytes of plaintext ending in 0x03 0x03 0x02: bad padding (not all pad bytes equal).
print("bad_padding", encrypt(b"0123456789abc\x03\x03\x02", pad=False))
print("zero_padding", encrypt(b"0123456789abcde\x00", pad=False))
print("raw", raw)
print("signature", hashlib.sha1((raw + "tiihtNczf5v6AKRyjwEUhQ==").encode()).hexdigest())
