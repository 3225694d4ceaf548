// Start Swagger UI on the page's #swagger-ui element (see app/routes/docs.py).
window.addEventListener("load", function () {
  "use strict";
  var container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    domNode: container,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // The default validator badge would call validator.swagger.io: no outside requests.
    validatorUrl: null,
    displayRequestDuration: true,
    tryItOutEnabled: false
  });
});
