#!/usr/bin/env python3
"""Message pushes as WeChat sends them, made by an independent implementation: wechatpy's crypto
(WeChatCrypto, PrpCrypto and its signature) for the encryption and signatures, pyca cryptography
for a ciphertext with bad padding. Prints one JSON object: case name -> {"query", "body"}.

usage: push_vectors.py TOKEN ENCODING_AES_KEY APPID MODE(safe|compatible|plain) FORMAT(json|xml)
"""
import base64
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.crypto import WeChatCrypto, _get_signature
from wechatpy.utils import WeChatSigner

token, aes_key, appid, mode, fmt = sys.argv[1:6]
now = str(int(time.time()))


def message(msg_id):
    """A text message from a user, in the configured format."""
    fields = {
        "ToUserName": "gh_mock",
        "FromUserName": "oMock_pusher",
        "CreateTime": now,
        "MsgType": "text",
        "Content": "你好 <wxgate> & co",
        "MsgId": msg_id,
    }
    if fmt == "json":
        return json.dumps({**fields, "CreateTime": int(now), "MsgId": int(msg_id)}, ensure_ascii=False)
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return f"<xml>{inner}</xml>"


def plain_signature(timestamp, nonce):
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return signer.signature


def envelope(encrypt, plaintext):
    """What WeChat POSTs in safe mode (Encrypt alone) or compatible mode (the plaintext beside)."""
    if fmt == "json":
        body = json.loads(plaintext) if mode == "compatible" else {"ToUserName": "gh_mock"}
        body["Encrypt"] = encrypt
        return json.dumps(body, ensure_ascii=False)
    inner = plaintext[len("<xml>"):-len("</xml>")] if mode == "compatible" else "<ToUserName><![CDATA[gh_mock]]></ToUserName>"
    return f"<xml>{inner}<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"


def encrypted(plaintext, for_appid=appid, timestamp=now, nonce="nonce42"):
    reply = WeChatCrypto(token, aes_key, for_appid).encrypt_message(plaintext, nonce, timestamp)
    encrypt = reply.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    signature = reply.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    assert signature == _get_signature(token, timestamp, nonce, encrypt)
    query = (f"signature={plain_signature(timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
             f"&openid=oMock_pusher&encrypt_type=aes&msg_signature={signature}")
    return {"query": query, "body": envelope(encrypt, plaintext)}


def plain(plaintext, timestamp=now, nonce="nonce42"):
    query = f"signature={plain_signature(timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}&openid=oMock_pusher"
    return {"query": query, "body": plaintext}


def badly_padded(plaintext, nonce="nonce42"):
    """The right frame and key, but the last pad byte one off: a strict check refuses it."""
    key = base64.b64decode(aes_key + "=")
    text = plaintext.encode()
    frame = os.urandom(16) + len(text).to_bytes(4, "big") + text + appid.encode()
    pad = 32 - len(frame) % 32
    frame += bytes([pad]) * (pad - 1) + bytes([pad - 1 if pad > 1 else 2])
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypt = base64.b64encode(encryptor.update(frame) + encryptor.finalize()).decode()
    signature = _get_signature(token, now, nonce, encrypt)
    query = (f"signature={plain_signature(now, nonce)}&timestamp={now}&nonce={nonce}"
             f"&encrypt_type=aes&msg_signature={signature}")
    return {"query": query, "body": envelope(encrypt, plaintext)}


make = plain if mode == "plain" else encrypted
stale = str(int(now) - 3600)
cases = {
    "valid": make(message("1001")),
    "second": make(message("1002")),
    "stale": make(message("1003"), timestamp=stale),
    "verification": {
        "query": f"signature={plain_signature(now, 'n1')}&timestamp={now}&nonce=n1&echostr=echo-4242",
        "body": "",
    },
}
tampered = make(message("1004"))
tampered["query"] = tampered["query"].replace("signature=", "signature=0", 1) if mode == "plain" \
    else tampered["query"].replace("msg_signature=", "msg_signature=0", 1)
cases["tampered"] = tampered
if mode != "plain":
    cases["wrong_appid"] = encrypted(message("1005"), for_appid="wx-some-other-app")
    cases["bad_padding"] = badly_padded(message("1006"))
print(json.dumps(cases, ensure_ascii=False))
