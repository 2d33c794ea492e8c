// Probe capture from the desk camera (getUserMedia), with the file input as the fallback.
// Loaded as a file because the Content-Security-Policy forbids inline scripts. The photo taken
// is put into the same file input and the form is submitted, so both paths reach the same check.
(function () {
  "use strict";
  const box = document.getElementById("camera");
  const form = document.getElementById("probe-form");
  if (!box || !form) { return; }
  const status = document.getElementById("camera-status");
  const start = document.getElementById("camera-start");
  const video = document.getElementById("camera-video");
  const take = document.getElementById("camera-take");
  const input = document.getElementById("probe");
  let stream = null;

  // A new photo chosen but not yet checked: the Search button below still names the photo shown, but
  // pressing it now would surprise the officer, so it waits until the new photo's check replaces it.
  function holdSearch(why) {
    const search = document.getElementById("search-button");
    if (search) {
      search.disabled = true;
      status.textContent = why;
    }
  }
  input.addEventListener("change", function () {
    holdSearch("New photo chosen. Press Check this photo: you can search once its check is shown.");
  });

  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = "The camera cannot be used in this browser. Choose a photo file instead.";
    return;
  }
  box.hidden = false;

  function stop() {
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    video.srcObject = null;
    video.hidden = true;
    take.hidden = true;
    start.hidden = false;
  }

  start.addEventListener("click", async function () {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    } catch (err) {
      status.textContent = "The camera could not be started (" + err.name + "). Choose a photo file instead.";
      input.focus();
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    start.hidden = true;
    video.addEventListener("loadedmetadata", function () {
      take.hidden = false;
      take.focus();
      status.textContent = "Camera on. Ask the detainee to face the camera, then press Take photo.";
    }, { once: true });
  });

  take.addEventListener("click", function () {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    stop();
    canvas.toBlob(function (blob) {
      const transfer = new DataTransfer();
      transfer.items.add(new File([blob], "camera.jpg", { type: "image/jpeg" }));
      input.files = transfer.files;
      status.textContent = "Photo taken. Checking it.";
      form.requestSubmit();
    }, "image/jpeg", 0.92);
  });

  window.addEventListener("pagehide", stop);
}());
