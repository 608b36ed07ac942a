#!/usr/bin/env python3
"""Drives Tripod's status page in a real browser (headless Chromium through Selenium).

Usage: ui_browser.py API_URL ADMIN_PASSWORD VOLUME_ID REPLICA_DIR SCREENSHOT_DIR

It logs in, finds the volume (created through the API by the caller) with its three
replicas in service, removes replica 1's directory and waits for the page to show that
replica degraded, puts back an empty directory and waits for it to show the rebuild
(progress, then in service again), saving a screenshot at each step. Exits non-zero with
the page's text on any failure.
"""
import os
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

api, password, volume, replica_dir, shots = sys.argv[1:6]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,900"):
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=options)


def fail(why):
    try:
        driver.save_screenshot(os.path.join(shots, "failure.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
    except Exception as e:  # the page may be gone
        body = f"(no page: {e})"
    logs = ""
    try:
        logs = "\n".join(str(l) for l in driver.get_log("browser"))
    except Exception:
        pass
    driver.quit()
    sys.exit(f"{why}\n--- page ---\n{body}\n--- console ---\n{logs}")


def wait_for(what, check, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception:
            pass
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


def health(slot):
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-volume="{volume}"]')
    cells = row.find_elements(By.CSS_SELECTOR, "td[data-health]")
    return cells[slot].get_attribute("data-health"), cells[slot].text


driver.get(api + "/ui")
wait_for("the login form", lambda: driver.find_element(By.ID, "login").is_displayed())
driver.find_element(By.ID, "password").send_keys(password)
driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
wait_for("the volume row", lambda: driver.find_element(By.CSS_SELECTOR, f'tr[data-volume="{volume}"]'))
row_text = driver.find_element(By.CSS_SELECTOR, f'tr[data-volume="{volume}"]').text
if "ui-volume" not in row_text:
    fail(f"the row does not name the volume: {row_text!r}")
# Its type's limits as the daemon applies them (an SSD disk of 1 GiB: 1800 + 50 IOPS).
limits = driver.find_element(By.CSS_SELECTOR, f'tr[data-volume="{volume}"] [data-limits]').text
if "1850 IOPS (burst 16000)" not in limits or "MiB/s" not in limits:
    fail(f"the row does not show the volume's limits: {limits!r}")
wait_for("three replicas in service", lambda: all(health(i)[0] == "in_service" for i in range(3)))
# Live figures: the page computes rates from /metrics between two polls.
wait_for("the I/O charts", lambda: len(driver.find_elements(
    By.CSS_SELECTOR, f'tr[data-volume="{volume}"] svg.spark polyline')) >= 4)
driver.save_screenshot(os.path.join(shots, "1-in-service.png"))

# The disk of replica 1 goes away: the page shows it degraded.
shutil.rmtree(replica_dir)
wait_for("replica 1 degraded", lambda: health(1)[0] == "degraded")
driver.save_screenshot(os.path.join(shots, "2-degraded.png"))

# An empty directory comes back in its place: the page follows the rebuild to the end.
os.makedirs(replica_dir)
state, text = wait_for("replica 1 rebuilding", lambda: health(1) if health(1)[0] == "rebuilding" else None)
if "%" not in text or "chunks" not in text:
    fail(f"no progress shown while rebuilding: {text!r}")
wait_for("an ETA", lambda: "ETA" in health(1)[1], timeout=60)
driver.save_screenshot(os.path.join(shots, "3-rebuilding.png"))
wait_for("replica 1 back in service", lambda: health(1)[0] == "in_service", timeout=180)
driver.save_screenshot(os.path.join(shots, "4-rebuilt.png"))

# The scrub action: started from the page, its result shows in the row.
row = driver.find_element(By.CSS_SELECTOR, f'tr[data-volume="{volume}"]')
row.find_element(By.XPATH, ".//button[text()='Scrub']").click()
wait_for("the scrub's result", lambda: "repaired" in driver.find_element(
    By.CSS_SELECTOR, f'tr[data-volume="{volume}"]').text, timeout=120)
driver.save_screenshot(os.path.join(shots, "5-scrubbed.png"))
driver.quit()
print("ok")
